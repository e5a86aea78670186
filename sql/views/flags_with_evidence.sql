-- Every flag with its evidence in plain columns, the episode it belongs to (and what became of
-- it), the cutoff and reliable-change value the rules used (the clinic's thresholds where it
-- sets its own) beside the instrument's registry values.
create or replace view flags_with_evidence as
with flagged as (
    select
        f.clinic_id,
        f.client_id,
        f.clinician_id,
        f.instrument,
        f.session_number,
        f.session_date,
        f.severity,
        f.reasons,
        f.is_new,
        f.alert_kind,
        f.total,
        f.previous_total,
        f.baseline_total,
        f.delta_previous,
        f.delta_baseline,
        f.fallen_part,
        f.cutoff,
        f.reliable_change,
        f.evidence,
        f.alert_episode_id,
        f.detected_at
    from flags as f
)

select
    fl.*,
    e.status as episode_status,
    e.opened_session as episode_opened_session,
    e.closed_session as episode_closed_session,
    i.cutoff as instrument_cutoff,
    i.reliable_change as instrument_reliable_change
from flagged as fl
left join alert_episodes as e on fl.alert_episode_id = e.alert_episode_id
inner join instruments as i on fl.instrument = i.instrument
