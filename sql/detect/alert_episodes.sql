-- The rows of `alert_episodes`: one per episode, with its status now. Repaired when the alliance
-- was back within reliable change of its baseline for two sessions running; ended when the client
-- has had no attended session for `ended_after_days` before the clinic's latest data date (the
-- client stopped attending); ongoing otherwise.
with sessions as (
    select * from detect_episode_sessions
    where alert_episode_id is not null
),

params as (
    select * from detect_params
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

client_last_attended as (
    select
        clinic_id,
        client_id,
        max(last_date) as last_attended_date
    from (
        select clinic_id, client_id, max(session_date) as last_date
        from detect_scope_measurements
        group by clinic_id, client_id
        union all
        select clinic_id, client_id, max(appointment_date)
        from detect_scope_appointments
        where status = 'attended'
        group by clinic_id, client_id
    )
    group by clinic_id, client_id
),

per_episode as (
    select
        alert_episode_id,
        clinic_id,
        client_id,
        instrument,
        arg_min(clinician_id, session_number) filter (where is_flag) as clinician_id,
        min(session_number) filter (where is_flag) as opened_session,
        min(session_date) filter (where is_flag) as opened_date,
        max(session_number) filter (where is_flag) as last_flag_session,
        max(severity_rank) filter (where is_flag) as max_severity_rank,
        min(session_number) filter (where is_repair_point) as repaired_session,
        min(session_date) filter (where is_repair_point) as repaired_date,
        max(session_number) as last_session,
        max(session_date) as last_session_date
    from sessions
    group by alert_episode_id, clinic_id, client_id, instrument
),

statused as (
    select
        e.*,
        case
            when e.repaired_session is not null then 'repaired'
            when a.last_attended_date < l.latest_date - p.ended_after_days::integer then 'ended'
            else 'ongoing'
        end as status
    from per_episode as e
    inner join params as p
        on e.clinic_id = p.clinic_id
        and e.instrument = p.instrument
    inner join clinic_latest as l
        on e.clinic_id = l.clinic_id
    inner join client_last_attended as a
        on e.clinic_id = a.clinic_id
        and e.client_id = a.client_id
)

select
    alert_episode_id,
    clinic_id,
    client_id,
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
