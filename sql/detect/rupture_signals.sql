-- Every alliance session with the flag decision, its reason codes and which part fell
-- (docs/detection.md gives each signal's evidence and the evaluation that set the numbers).
--
-- A session is flagged when it is a candidate (enough history, a drop of at least the clinic's
-- minimum) and either
--   its alert score reaches the clinic's threshold: its alert-budget quantile where it set a
--   budget and has the history for one, else `flag_evidence`. The alert score is the flag
--   score (z_total + z of the part that fell most, on the client's shrunk scale) or the CUSUM
--   of its standardized drops scaled so that `cusum_h` meets `flag_evidence` (a sustained
--   decline), whichever is stronger.
-- The other signals are reasons and severity: reliable drop from the previous session or from
-- the baseline (registry reliable change, Jacobson & Truax 1991), deflection in the client's own
-- SDs, below cutoff (news only when the baseline was above it: ceiling awareness), which part
-- fell, and symptom deterioration. Disengagement and severity need the previous session's flag
-- and are set in episode_sessions.
with scores as (
    select
        s.*,
        c.cusum,
        -- the flag score, or the CUSUM on its scale (decline_cusum: alert_thresholds reads the
        -- same)
        c.alert_score,
        -- symptom deterioration is context for the signals, not part of a score: joined here,
        -- over the sessions whose signals are computed, not in rupture_scores, which the CUSUM
        -- reads for every session (~0.9 CPU s at 10M rows)
        y.deteriorated_instruments is not null as is_symptom_deterioration,
        y.deteriorated_instruments
    from detect_rupture_scores as s
    inner join detect_decline_cusum as c
        on s.series_key = c.series_key
        and s.session_number = c.session_number
    left join detect_symptom_context as y
        on s.series_key = y.series_key
        and s.session_number = y.session_number
),

thresholds as (
    select * from detect_alert_thresholds
),

signals as (
    select
        s.*,
        coalesce(t.budget_threshold, s.flag_evidence) as flag_threshold,
        -- the clinic's own threshold holds this week (its budget's, or its ceiling raised it)
        t.budget_threshold is not null as is_clinic_threshold,
        s.total < s.cutoff as is_below_cutoff,
        coalesce(s.n_prior >= 1 and s.delta_previous >= s.reliable_change, false)
            as is_reliable_drop_previous,
        coalesce(s.n_prior >= s.min_history and s.delta_baseline >= s.reliable_change, false)
            as is_reliable_drop_baseline,
        coalesce(s.n_prior >= s.min_history and s.z_total >= s.deflection_sd, false)
            as is_deflection,
        -- a part fell against the rest: by part_z of its own (shrunk) SDs and by the
        -- clinic's minimum drop
        coalesce(
            s.z_bond_contrast >= s.part_z
            and s.delta_bond_contrast >= s.min_drop_sd * s.clinic_bond_contrast_sd,
            false
        ) as is_bond_drop,
        coalesce(
            s.z_goal_task_contrast >= s.part_z
            and s.delta_goal_task_contrast >= s.min_drop_sd * s.clinic_goal_task_contrast_sd,
            false
        ) as is_goal_task_drop,
        -- the whole fell with no part standing out: both parts' per-item means fell
        coalesce(
            s.z_total >= s.deflection_sd and s.delta_bond > 0 and s.delta_goal_task > 0, false
        ) as is_whole_drop
    from scores as s
    left join thresholds as t
        on s.param_key = t.param_key
        and s.week_start = t.week_start
),

decided as (
    select
        *,
        is_candidate and alert_score >= flag_threshold as is_flag,
        is_candidate and cusum * flag_evidence / cusum_h >= flag_threshold as is_cusum,
        -- two sessions running fell below the level before them (a sustained decline reason)
        coalesce(is_candidate and z_pair >= flag_threshold, false) as is_pair_drop,
        is_reliable_drop_previous or is_reliable_drop_baseline as is_reliable_drop,
        -- the flag rests on the calibrated score alone (the whole and the part that fell
        -- most, together, on the client's shrunk scale; or a budget threshold below the
        -- rules'): no single rule above reached its own bar, and the reasons must still say
        -- why the session was flagged
        coalesce(
            is_candidate
            and alert_score >= flag_threshold
            and not (
                is_deflection
                or is_reliable_drop_previous
                or is_reliable_drop_baseline
                or is_bond_drop
                or is_goal_task_drop
                or is_cusum
                or is_pair_drop
            ),
            false
        ) as is_calibrated_drop,
        case
            when is_bond_drop and not is_goal_task_drop then 'bond'
            when is_goal_task_drop and not is_bond_drop then 'goal_task'
            when is_bond_drop or is_goal_task_drop or is_whole_drop then 'overall'
        end as fallen_part
    from signals
)

select * from decided
