-- Client sessions with reliable symptom deterioration (ORS, PHQ-9, GAD-7): the score is worse than
-- the client's first score by at least the registry's reliable change (Jacobson & Truax 1991).
-- Context for alliance flags: it raises their priority, it never raises a flag by itself. Only
-- deteriorated sessions are kept (a small relation the signals left-join).
with symptoms as (
    select
        hash(m.clinic_id, m.client_id) as client_key,
        m.session_number,
        m.instrument,
        m.total,
        p.reliable_change,
        p.worse_sign
    from detect_scope_measurements as m
    inner join detect_symptom_params as p
        on m.instrument = p.instrument
),

firsts as (
    -- the client's first score on each instrument: the reference for deterioration (a grouped
    -- aggregate rather than a window: the same answer, several times faster at scale)
    select
        client_key,
        instrument,
        arg_min(total, session_number) as first_total
    from symptoms
    group by client_key, instrument
),

deteriorated as (
    select
        s.client_key,
        s.session_number,
        s.instrument
    from symptoms as s
    inner join firsts as f
        on s.client_key = f.client_key
        and s.instrument = f.instrument
    -- worse_sign makes the difference positive = worse, in the instrument's own units
    where s.worse_sign * (s.total - f.first_total) >= s.reliable_change
),

per_session as (
    select
        client_key,
        session_number,
        list(instrument order by instrument) as deteriorated_instruments
    from deteriorated
    group by client_key, session_number
)

select * from per_session
