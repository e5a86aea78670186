-- Client sessions with reliable symptom deterioration (ORS, PHQ-9, GAD-7): the score is worse than
-- the client's first score of the same treatment episode by at least the registry's reliable
-- change (Jacobson & Truax 1991). Context for alliance flags: it raises their priority, it never
-- raises a flag by itself. Only deteriorated sessions are kept (a small relation the signals
-- left-join), keyed as the alliance series of the same treatment episode are (one row per
-- alliance instrument): a second episode restarts its session numbers, and its scores must not
-- mark the first episode's sessions of the same number (that was a look-ahead).
with symptoms as (
    select
        -- integer keys for the grouping and the join (strings cost ~1 CPU s at 10M rows); the
        -- names ride along to key the few deteriorated sessions as the alliance series are
        hash(m.clinic_id, m.client_id, coalesce(m.episode_id, '')) as episode_key,
        m.clinic_id,
        m.client_id,
        coalesce(m.episode_id, '') as episode_id,
        m.session_number,
        -- the order in which the scores became known: by date, same-day sessions by number
        -- (one integer: a day is 10^10 session numbers apart, wider than any session number)
        date_diff('day', date '2000-01-01', m.session_date)::bigint * 10000000000
        + m.session_number as known_order,
        m.instrument,
        m.total,
        p.reliable_change,
        p.worse_sign
    from detect_scope_measurements as m
    inner join detect_symptom_params as p
        on m.instrument = p.instrument
),

firsts as (
    -- the client's first score of the treatment episode on each instrument: the reference for
    -- deterioration (a grouped aggregate rather than a window: the same answer, several times
    -- faster at scale). First by date, not by session number: a first session typed with a
    -- later date would otherwise be the reference of sessions dated before it (a look-ahead)
    select
        episode_key,
        instrument,
        arg_min(total, known_order) as first_total
    from symptoms
    group by episode_key, instrument
),

deteriorated as (
    select
        s.episode_key,
        s.clinic_id,
        s.client_id,
        s.episode_id,
        s.session_number,
        s.instrument
    from symptoms as s
    inner join firsts as f
        on s.episode_key = f.episode_key
        and s.instrument = f.instrument
    -- worse_sign makes the difference positive = worse, in the instrument's own units
    where s.worse_sign * (s.total - f.first_total) >= s.reliable_change
),

per_session as (
    select
        episode_key,
        session_number,
        any_value(clinic_id) as clinic_id,
        any_value(client_id) as client_id,
        any_value(episode_id) as episode_id,
        list(instrument order by instrument) as deteriorated_instruments
    from deteriorated
    group by episode_key, session_number
)

-- the key of each alliance series of the episode (alliance_series: clinic, client, episode,
-- instrument)
select
    hash(d.clinic_id, d.client_id, d.episode_id, a.instrument) as series_key,
    d.session_number,
    d.deteriorated_instruments
from per_session as d
cross join (select distinct instrument from detect_params) as a
