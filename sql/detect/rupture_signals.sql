-- Every alliance session with each detection signal, the flag decision, its severity and reason
-- codes (docs/detection.md gives each signal's evidence and the evaluation that set the numbers).
--
-- The flag decision combines the two signals that separate ruptures from noise best:
--   * deflection of the total below the client's running baseline, in the client's own SDs with a
--     floor (Stiles et al. 2004; Strauss et al. 2006), and
--   * deflection of the part that fell most (bond or goal/task), in that part's own SDs with a
--     floor: a rupture falls in one part of the alliance (Safran & Muran 2000; Eubanks et al.
--     2018), an off day lowers every item alike;
-- their sum is the flag evidence, and the drop from the baseline must also be a sizeable share of
-- the registry's reliable change (Jacobson & Truax 1991), so a client with a very flat history is
-- not flagged for a dip smaller than measurement error.
-- The other signals are reasons and severity: reliable drop from the previous session or from the
-- baseline, below cutoff (only news when the baseline was above it: ceiling
-- awareness), which part fell, and symptom deterioration. Disengagement and severity need the
-- previous session's flag and are set in episode_sessions, in the same window pass as episodes;
-- sustained decline is a reason only, so flags.sql fits its slope for the flagged sessions alone.
-- This relation has no window of its own: it is arithmetic on alliance_features (a view: the
-- episode pass reads a few of its columns for every session, flags read all of them for the
-- flagged sessions only).
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
        p.cutoff,
        p.reliable_change,
        p.part_drop,
        p.deflection_sd,
        p.min_history,
        p.flag_evidence,
        p.flag_min_drop,
        p.decline_sessions,
        p.decline_min_drop,
        s.deteriorated_instruments is not null as is_symptom_deterioration,
        s.deteriorated_instruments,
        f.previous_total - f.total as delta_previous,
        f.baseline_total - f.total as delta_baseline,
        f.baseline_bond - f.bond_score as delta_bond,
        f.baseline_goal_task - f.goal_task_score as delta_goal_task,
        greatest(coalesce(f.baseline_sd, 0), p.sd_floor) as deflection_scale,
        greatest(coalesce(f.baseline_bond_sd, 0), p.part_sd_floor) as bond_scale,
        greatest(coalesce(f.baseline_goal_task_sd, 0), p.part_sd_floor) as goal_task_scale
    from features as f
    inner join params as p
        on f.param_key = p.param_key
    left join symptoms as s
        on f.client_key = s.client_key
        and f.session_number = s.session_number
),

deflections as (
    select
        *,
        delta_baseline / deflection_scale as z_total,
        delta_bond / bond_scale as z_bond,
        delta_goal_task / goal_task_scale as z_goal_task
    from measured
),

signals as (
    select
        *,
        greatest(z_bond, z_goal_task) as z_part,
        -- a part score is null when one of its items is missing: the total then counts twice
        z_total + coalesce(greatest(z_bond, z_goal_task), z_total) as flag_score,
        total < cutoff as is_below_cutoff,
        coalesce(n_prior >= 1 and delta_previous >= reliable_change, false)
            as is_reliable_drop_previous,
        coalesce(n_prior >= min_history and delta_baseline >= reliable_change, false)
            as is_reliable_drop_baseline,
        coalesce(n_prior >= min_history and z_total >= deflection_sd, false) as is_deflection,
        -- a part fell: by a reliable total drop's share per item, and by one own SD (floored)
        coalesce(delta_bond >= part_drop and z_bond >= 1, false) as is_bond_drop,
        coalesce(delta_goal_task >= part_drop and z_goal_task >= 1, false) as is_goal_task_drop
    from deflections
),

decided as (
    select
        *,
        coalesce(
            n_prior >= min_history
            and flag_score >= flag_evidence
            and delta_baseline >= flag_min_drop,
            false
        ) as is_flag,
        is_reliable_drop_previous or is_reliable_drop_baseline as is_reliable_drop,
        case
            when not (is_bond_drop or is_goal_task_drop) then null
            when is_bond_drop and is_goal_task_drop then 'overall'
            when is_bond_drop then 'bond'
            else 'goal_task'
        end as fallen_part
    from signals
)

select * from decided
