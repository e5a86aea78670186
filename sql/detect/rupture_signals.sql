-- Every alliance session with each detection signal as a boolean, the flag decision, its severity
-- and reason codes. Signals, ranked by evidence (docs/detection.md):
--   reliable drop from the previous session / from the client's running baseline (Jacobson &
--   Truax 1991, reliable change from the registry); deflection of k own-SDs with a floor (Stiles
--   et al. 2004; Strauss et al. 2006); sustained decline; level below cutoff only when it is new
--   for this client (ceiling-aware: a chronically low client is not newly at risk); which part
--   fell; disengagement and symptom deterioration as context that raises severity.
with features as (
    select * from detect_alliance_features
),

params as (
    select * from detect_params
),

symptoms as (
    select * from detect_symptom_context
),

measured as (
    select
        f.*,
        p.deflection_sd,
        p.sd_floor,
        p.min_history,
        p.flag_min_sd,
        p.decline_sessions,
        p.decline_min_drop,
        p.flag_first_below_cutoff,
        coalesce(s.is_symptom_deterioration, false) as is_symptom_deterioration,
        s.deteriorated_instruments,
        f.previous_total - f.total as delta_previous,
        f.baseline_total - f.total as delta_baseline,
        greatest(coalesce(f.baseline_sd, 0), p.sd_floor) as deflection_scale,
        case p.decline_sessions
            when 3 then f.slope_3
            when 4 then f.slope_4
            else f.slope_5
        end as decline_slope,
        f.baseline_bond - f.bond_score as delta_bond,
        f.baseline_goal_task - f.goal_task_score as delta_goal_task
    from features as f
    inner join params as p
        on f.clinic_id = p.clinic_id
        and f.instrument = p.instrument
    left join symptoms as s
        on f.clinic_id = s.clinic_id
        and f.client_id = s.client_id
        and f.session_number = s.session_number
),

signals as (
    select
        *,
        total < cutoff as is_below_cutoff,
        coalesce(n_prior >= 1 and delta_previous >= reliable_change, false)
            as is_reliable_drop_previous,
        coalesce(n_prior >= min_history and delta_baseline >= reliable_change, false)
            as is_reliable_drop_baseline,
        coalesce(n_prior >= min_history and delta_baseline >= deflection_sd * deflection_scale, false)
            as is_deflection,
        coalesce(
            n_prior >= decline_sessions - 1
            and -decline_slope * (decline_sessions - 1) >= decline_min_drop,
            false
        ) as is_sustained_decline,
        -- below cutoff is news only when the client's own baseline was above it and the score
        -- fell at least one of the client's own SDs to get there (lenient deflection, Strauss et
        -- al. 2006): hovering around the cutoff is the client's normal, not a rupture
        coalesce(
            total < cutoff
            and (
                (n_prior >= 1 and baseline_total >= cutoff and delta_baseline >= deflection_scale)
                or (n_prior = 0 and flag_first_below_cutoff)
            ),
            false
        ) as is_new_below_cutoff,
        coalesce(delta_bond >= part_drop, false) as is_bond_drop,
        coalesce(delta_goal_task >= part_drop, false) as is_goal_task_drop
    from measured
),

drops as (
    select
        *,
        is_reliable_drop_previous or is_reliable_drop_baseline or is_deflection as is_alliance_drop,
        -- withdrawal: a cancellation or no-show since the previous session, right after a drop
        n_missed_since_previous > 0
        and (
            is_reliable_drop_previous or is_reliable_drop_baseline or is_deflection
            or coalesce(
                lag(is_reliable_drop_previous or is_reliable_drop_baseline or is_deflection) over (
                    partition by clinic_id, client_id, instrument
                    order by session_number
                ),
                false
            )
        ) as is_disengagement
    from signals
),

decided as (
    select
        *,
        -- every flag needs history and the score sitting clearly below the client's own
        -- baseline (in own SDs, floored): a drop from an unusually good previous session, a slide
        -- within the usual range, or a level near the cutoff alone are noise, not ruptures
        coalesce(
            n_prior >= min_history
            and delta_baseline >= flag_min_sd * deflection_scale
            and (is_alliance_drop or is_sustained_decline),
            false
        ) as is_flag,
        case
            when is_alliance_drop
                and (is_below_cutoff or is_symptom_deterioration or is_disengagement) then 3
            when is_alliance_drop then 2
            when is_sustained_decline or is_new_below_cutoff then 1
            else 0
        end as severity_rank,
        case
            when greatest(delta_bond, delta_goal_task) < part_drop then null
            when delta_bond >= 2 * greatest(delta_goal_task, 0) then 'bond'
            when delta_goal_task >= 2 * greatest(delta_bond, 0) then 'goal_task'
            else 'overall'
        end as fallen_part
    from drops
)

select * from decided
