-- One row per measure as currently loaded: the client's score at each session with the change
-- from the previous session and from the client's first (baseline) session on that instrument,
-- within one treatment episode (episode_id, '' when the clinic's export has none).
-- construct says alliance (SRS, WAI-SR) or symptoms (ORS, PHQ-9, GAD-7); direction says which
-- way is better, so change_from_baseline_improving is positive when the client got better.
create or replace view client_trajectories as
with ordered as (
    select
        m.clinic_id,
        m.client_id,
        m.episode_id,
        m.clinician_id,
        m.instrument,
        i.construct,
        i.direction,
        m.session_number,
        m.session_date,
        m.total,
        lag(m.total) over w as previous_total,
        first_value(m.total) over w as baseline_total,
        first_value(m.session_number) over w as baseline_session
    from measurements as m
    inner join instruments as i on m.instrument = i.instrument
    window w as (
        partition by m.clinic_id, m.client_id, m.episode_id, m.instrument
        order by m.session_number
        rows between unbounded preceding and current row
    )
)

select
    *,
    total - previous_total as delta_previous,
    total - baseline_total as change_from_baseline,
    case direction
        when 'higher_worse' then baseline_total - total
        else total - baseline_total
    end as change_from_baseline_improving
from ordered
