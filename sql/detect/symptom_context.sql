-- Reliable symptom deterioration per client session (ORS, PHQ-9, GAD-7): the score is worse than
-- the client's first score by at least the registry's reliable change (Jacobson & Truax 1991).
-- Context for alliance flags: it raises their priority, it never raises a flag by itself.
with symptoms as (
    select
        m.clinic_id,
        m.client_id,
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
        clinic_id,
        client_id,
        instrument,
        arg_min(total, session_number) as first_total
    from symptoms
    group by clinic_id, client_id, instrument
),

changes as (
    select
        s.clinic_id,
        s.client_id,
        s.session_number,
        s.instrument,
        s.reliable_change,
        -- positive = worse, in the instrument's own units
        s.worse_sign * (s.total - f.first_total) as delta_worse
    from symptoms as s
    inner join firsts as f
        on s.clinic_id = f.clinic_id
        and s.client_id = f.client_id
        and s.instrument = f.instrument
),

per_session as (
    select
        hash(clinic_id, client_id) as client_key,
        session_number,
        bool_or(delta_worse >= reliable_change) as is_symptom_deterioration,
        list(instrument order by instrument) filter (
            where delta_worse >= reliable_change
        ) as deteriorated_instruments
    from changes
    group by hash(clinic_id, client_id), session_number
)

select * from per_session
