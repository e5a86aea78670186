-- The rows of `alert_episodes`: one per episode, with its status now. Repaired when the alliance
-- was back within reliable change of its baseline for two sessions running; ended when the client
-- has had no attended session for `ended_after_days` before the clinic's latest data date (the
-- client stopped attending), or when the episode's treatment episode has had no session for as
-- long while the client went on in a later one (the treatment the rupture belonged to is over);
-- ongoing otherwise.
with flagged as (
    select * from detect_flags
    where is_flag
),

params as (
    select * from detect_params
),

per_episode as (
    select
        alert_episode_id,
        series_key,
        clinic_id,
        client_id,
        episode_id,
        instrument,
        arg_min(clinician_id, session_number) as clinician_id,
        min(session_number) as opened_session,
        min(session_date) as opened_date,
        max(session_number) as last_flag_session,
        max(severity_rank) as max_severity_rank
    from flagged
    group by alert_episode_id, series_key, clinic_id, client_id, episode_id, instrument
),

repairs as (
    -- the first repair point after an episode opened closes it
    select
        series_key,
        opened_session,
        min(session_number) as repaired_session,
        min(session_date) as repaired_date
    from detect_episode_sessions
    where is_repair_point
    group by series_key, opened_session
),

open_episodes as (
    -- episodes not repaired: whether the client stopped attending decides ongoing or ended
    select
        e.alert_episode_id,
        e.series_key,
        e.clinic_id,
        e.client_id,
        e.episode_id,
        e.instrument
    from per_episode as e
    anti join repairs as r
        on e.series_key = r.series_key
        and e.opened_session = r.opened_session
),

series_last as (
    -- the series' last session: where an episode without repair ends
    select
        f.series_key,
        max(f.session_number) as last_session,
        max(f.session_date) as last_session_date
    from detect_alliance_features as f
    semi join open_episodes as o
        on f.series_key = o.series_key
    group by f.series_key
),

clinic_latest as (
    -- the latest date the warehouse knows for each clinic (all clients, not only those in scope)
    select
        clinic_id,
        max(latest_date) as latest_date
    from (
        select clinic_id, max(session_date) as latest_date from measurements group by clinic_id
        union all
        select clinic_id, max(appointment_date) from appointments group by clinic_id
    )
    group by clinic_id
),

treatment_episodes as (
    -- each treatment episode of a client with an open episode: its last session (any
    -- instrument); measurements carry the treatment episode, appointments do not
    select
        m.clinic_id,
        m.client_id,
        coalesce(m.episode_id, '') as episode_id,
        max(m.session_date) as last_date
    from detect_scope_measurements as m
    semi join open_episodes as o
        on m.clinic_id = o.clinic_id
        and m.client_id = o.client_id
    group by all
),

client_last_attended as (
    select
        clinic_id,
        client_id,
        max(last_date) as last_attended_date
    from (
        select clinic_id, client_id, last_date from treatment_episodes
        union all
        select a.clinic_id, a.client_id, max(a.appointment_date)
        from detect_scope_appointments as a
        semi join open_episodes as o
            on a.clinic_id = o.clinic_id
            and a.client_id = o.client_id
        where a.status = 'attended'
        group by a.clinic_id, a.client_id
    )
    group by clinic_id, client_id
),

left_treatment as (
    -- open episodes whose treatment episode the client left for a later one: the client's
    -- latest session of any treatment episode is later than this one's last. (A correlated
    -- `exists` with two inequalities, `<>` on the episode and `>` on the date, returned no
    -- rows in DuckDB 1.4.4: a join on the client's latest date instead.)
    select
        o.alert_episode_id,
        t.last_date as treatment_last_date
    from open_episodes as o
    inner join treatment_episodes as t
        on o.clinic_id = t.clinic_id
        and o.client_id = t.client_id
        and o.episode_id = t.episode_id
    inner join (
        select clinic_id, client_id, max(last_date) as client_last_date
        from treatment_episodes
        group by all
    ) as c
        on t.clinic_id = c.clinic_id
        and t.client_id = c.client_id
    where c.client_last_date > t.last_date
),

statused as (
    select
        e.*,
        r.repaired_session,
        r.repaired_date,
        s.last_session,
        s.last_session_date,
        case
            when r.repaired_session is not null then 'repaired'
            when a.last_attended_date < l.latest_date - p.ended_after_days::integer then 'ended'
            when t.treatment_last_date < l.latest_date - p.ended_after_days::integer then 'ended'
            else 'ongoing'
        end as status
    from per_episode as e
    inner join params as p
        on e.clinic_id = p.clinic_id
        and e.instrument = p.instrument
    inner join clinic_latest as l
        on e.clinic_id = l.clinic_id
    left join repairs as r
        on e.series_key = r.series_key
        and e.opened_session = r.opened_session
    left join series_last as s
        on e.series_key = s.series_key
    left join client_last_attended as a
        on e.clinic_id = a.clinic_id
        and e.client_id = a.client_id
    left join left_treatment as t
        on e.alert_episode_id = t.alert_episode_id
)

select
    alert_episode_id,
    clinic_id,
    client_id,
    episode_id,
    clinician_id,
    instrument,
    opened_session,
    opened_date,
    last_flag_session,
    case max_severity_rank when 3 then 'high' when 2 then 'medium' else 'low' end as max_severity,
    status,
    case status
        when 'repaired' then repaired_session
        when 'ended' then last_session
    end as closed_session,
    case status
        when 'repaired' then repaired_date
        when 'ended' then last_session_date
    end as closed_date
from statused
