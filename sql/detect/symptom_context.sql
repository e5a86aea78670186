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

changes as (
    select
        *,
        -- positive = worse, in the instrument's own units
        worse_sign * (
            total - first_value(total) over (
                partition by clinic_id, client_id, instrument
                order by session_number
                rows between unbounded preceding and current row
            )
        ) as delta_worse
    from symptoms
),

per_session as (
    select
        clinic_id,
        client_id,
        session_number,
        bool_or(delta_worse >= reliable_change) as is_symptom_deterioration,
        list(instrument order by instrument) filter (
            where delta_worse >= reliable_change
        ) as deteriorated_instruments
    from changes
    group by clinic_id, client_id, session_number
)

select * from per_session
