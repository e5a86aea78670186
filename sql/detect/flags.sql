-- The rows of `flags` (CONTRACT): one per flagged alliance session, with severity, reason codes,
-- its alert episode, whether it is news to the clinician (opening or escalation), and the
-- evidence numbers a digest shows.
with episodes as (
    select
        series_key,
        session_number,
        alert_episode_id,
        severity_rank,
        is_disengagement,
        is_opening,
        is_escalation,
        is_ongoing
    from detect_episode_sessions
    where is_flagged
),

signals as (
    select * from detect_rupture_signals
),

flag_rows as (
    select
        s.clinic_id,
        s.client_id,
        s.clinician_id,
        s.session_number,
        s.session_date,
        s.instrument,
        case
            when e.is_ongoing then 'low'
            when e.severity_rank = 3 then 'high'
            when e.severity_rank = 2 then 'medium'
            else 'low'
        end as severity,
        list_filter(
            [
                case when s.is_below_cutoff then 'below_cutoff' end,
                case when s.is_reliable_drop_previous then 'reliable_drop_previous' end,
                case when s.is_reliable_drop_baseline then 'reliable_drop_baseline' end,
                case when s.is_deflection then 'deflection' end,
                case when s.is_sustained_decline then 'sustained_decline' end,
                case when s.is_bond_drop then 'bond_drop' end,
                case when s.is_goal_task_drop then 'goal_task_drop' end,
                case when e.is_disengagement then 'disengagement' end,
                case when s.is_symptom_deterioration then 'symptom_deterioration' end,
                case when e.is_ongoing then 'still_below_baseline' end
            ],
            x -> x is not null
        ) as reasons,
        e.alert_episode_id,
        coalesce(e.is_opening or e.is_escalation, false) as is_new,
        s.total,
        s.previous_total,
        s.baseline_total,
        s.delta_previous,
        s.delta_baseline,
        s.reliable_change,
        s.cutoff,
        s.fallen_part,
        json_object(
            'alert_kind', case
                when e.is_opening then 'opened'
                when e.is_escalation then 'escalated'
                when e.is_ongoing then 'still_below_baseline'
                else 'ongoing'
            end,
            'n_prior_sessions', s.n_prior,
            'flag_score', s.flag_score,
            'flag_evidence', s.flag_evidence,
            'z_total', s.z_total,
            'z_bond', s.z_bond,
            'z_goal_task', s.z_goal_task,
            'baseline_sd', s.baseline_sd,
            'deflection_scale', s.deflection_scale,
            'deflection_sd', s.deflection_sd,
            'decline_slope', s.decline_slope,
            'decline_sessions', s.decline_sessions,
            'bond_score', s.bond_score,
            'baseline_bond', s.baseline_bond,
            'delta_bond', s.delta_bond,
            'goal_task_score', s.goal_task_score,
            'baseline_goal_task', s.baseline_goal_task,
            'delta_goal_task', s.delta_goal_task,
            'n_missed_since_previous', s.n_missed_since_previous,
            'deteriorated_instruments', s.deteriorated_instruments
        ) as evidence
    from episodes as e
    inner join signals as s
        on e.series_key = s.series_key
        and e.session_number = s.session_number
)

select * from flag_rows
