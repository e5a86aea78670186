-- Every alliance session with its standardized drops and flag score, on the client's own scale
-- shrunk toward the clinic's (docs/detection.md):
--   * the client's variance of the total (and of each part) over the n earlier sessions, s2, is
--     shrunk toward the clinic's pooled within-client variance of the weeks before, sp2, with the
--     clinic's prior weight d0 (empirical Bayes, Smyth 2004):
--         v = (d0 * sp2 + (n - 1) * s2) / (d0 + n - 1)
--     so a client with two sessions is judged mostly on the clinic's scale and one with twelve
--     mostly on their own; a client at the ceiling who varies by half a point is judged on half
--     a point, not on a population constant;
--   * the scale of a new session's deviation from the running mean is sqrt(v * (1 + 1 / n));
--   * z_total: the drop of the total below the running baseline in that scale; z_bond_contrast,
--     z_goal_task_contrast: the drop of a part against the whole (the part's per-item mean minus
--     the total's), in which the session's shared swing cancels;
--   * flag score: the strongest direction of the drop: the whole, or the whole together with one
--     part falling against the rest (a rupture falls in one part of the alliance, Safran &
--     Muran 2000; an off day lowers every item alike);
-- A drop smaller than `min_drop_sd` of the clinic's pooled within-client SD is never a
-- candidate: its score enters the alert-budget histogram as "no candidate".
with features as (
    select * from detect_alliance_features
),

params as (
    select * from detect_params
),

calibration as (
    select * from detect_clinic_calibration
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
        p.min_drop_sd,
        p.part_z,
        p.cusum_k,
        p.cusum_h,
        p.alert_budget,
        p.decline_sessions,
        p.decline_min_drop,
        c.n_calibration_sessions,
        c.pooled_var_total,
        c.pooled_var_total_down,
        c.prior_df_total,
        c.prior_df_bond,
        c.prior_df_goal_task,
        f.previous_total - f.total as delta_previous,
        f.baseline_total - f.total as delta_baseline,
        f.baseline_bond - f.bond_score as delta_bond,
        f.baseline_goal_task - f.goal_task_score as delta_goal_task,
        f.baseline_bond_contrast - f.bond_contrast as delta_bond_contrast,
        f.baseline_goal_task_contrast - f.goal_task_contrast as delta_goal_task_contrast,
        -- shrunk variances (null before the second session: no running mean yet)
        (
            c.prior_df_total * c.pooled_var_total
            + (f.n_prior - 1) * coalesce(f.baseline_sd ^ 2, 0)
        ) / (c.prior_df_total + f.n_prior - 1) as shrunk_var_total,
        -- the clinic's skew: its downside variance (the squared residuals below the
        -- prediction) over its symmetric one, floored at 1. A bounded, compressed scale (a
        -- ceiling) makes clients fall further than they rise, so the symmetric variance
        -- understates an ordinary bad day; under a symmetric distribution the two agree
        greatest(1, c.pooled_var_total_down / c.pooled_var_total) as clinic_skew,
        (
            c.prior_df_bond * c.pooled_var_bond
            + (f.n_prior - 1) * coalesce(f.baseline_bond_contrast_sd ^ 2, 0)
        ) / (c.prior_df_bond + f.n_prior - 1) as shrunk_var_bond_contrast,
        (
            c.prior_df_goal_task * c.pooled_var_goal_task
            + (f.n_prior - 1) * coalesce(f.baseline_goal_task_contrast_sd ^ 2, 0)
        ) / (c.prior_df_goal_task + f.n_prior - 1) as shrunk_var_goal_task_contrast,
        -- the two latest sessions against the sessions before them (the running baseline and
        -- SD one session back, recovered from this row's: mean m1 = (n base - prev) / (n - 1),
        -- sum of squares by Welford's update run backwards), so a drop that holds for two
        -- sessions is judged on their mean and not against a baseline the first of them lowered
        (f.n_prior * f.baseline_total - f.previous_total) / nullif(f.n_prior - 1, 0)
            as pair_baseline,
        greatest(
            (f.n_prior - 1) * f.baseline_sd ^ 2
            - (f.previous_total - (f.n_prior * f.baseline_total - f.previous_total)
                / nullif(f.n_prior - 1, 0))
            * (f.previous_total - f.baseline_total),
            0
        ) as pair_baseline_ss,
        sqrt(c.pooled_var_total) as clinic_sd,
        sqrt(c.pooled_var_bond) as clinic_bond_contrast_sd,
        sqrt(c.pooled_var_goal_task) as clinic_goal_task_contrast_sd
    from features as f
    inner join params as p
        on f.param_key = p.param_key
    inner join calibration as c
        on f.param_key = c.param_key
        and f.week_start = c.week_start
),

paired as (
    select
        * exclude (pair_baseline_ss),
        pair_baseline - (previous_total + total) / 2 as delta_pair,
        -- the shrunk variance one session back (n - 2 degrees of freedom of the client's own)
        case when n_prior >= 3 then
            (prior_df_total * pooled_var_total + pair_baseline_ss) / (prior_df_total + n_prior - 2)
        end as shrunk_var_pair
    from measured
),

scaled as (
    select
        *,
        -- the mean of two new sessions against a mean of n - 1, on the client's variance
        -- widened by the clinic's skew (a drop is judged on how far its clients fall on an
        -- ordinary bad day)
        sqrt(shrunk_var_pair * clinic_skew * (1 / 2 + 1 / (n_prior - 1))) as pair_scale,
        -- the deviation of one new session from a mean of n: predictive scale, widened alike
        case when n_prior >= 1 then sqrt(shrunk_var_total * clinic_skew * (1 + 1 / n_prior)) end
            as deflection_scale,
        case when n_prior >= 1 then sqrt(shrunk_var_bond_contrast * (1 + 1 / n_prior)) end
            as bond_contrast_scale,
        case when n_prior >= 1 then sqrt(shrunk_var_goal_task_contrast * (1 + 1 / n_prior)) end
            as goal_task_contrast_scale
    from paired
),

moderated as (
    -- moderated t statistics (Smyth 2004): the drop over its shrunk scale, with d0 + n - 1
    -- degrees of freedom
    select
        *,
        delta_baseline / nullif(deflection_scale, 0) as t_total,
        delta_bond_contrast / nullif(bond_contrast_scale, 0) as t_bond_contrast,
        delta_goal_task_contrast / nullif(goal_task_contrast_scale, 0) as t_goal_task_contrast,
        delta_pair / nullif(pair_scale, 0) as t_pair,
        prior_df_total + n_prior - 2 as df_pair,
        prior_df_total + n_prior - 1 as df_total,
        prior_df_bond + n_prior - 1 as df_bond_contrast,
        prior_df_goal_task + n_prior - 1 as df_goal_task_contrast
    from scaled
),

deflections as (
    -- each t as the normal deviate of the same tail probability (Wallace 1959:
    -- z = sign(t) sqrt(df ln(1 + t^2 / df)) (8 df + 1) / (8 df + 3)), so that a client with
    -- two sessions, whose scale is still uncertain, needs a larger drop than one with twelve
    select
        *,
        sign(t_total) * sqrt(df_total * ln(1 + t_total ^ 2 / df_total))
        * (8 * df_total + 1) / (8 * df_total + 3) as z_total,
        sign(t_bond_contrast)
        * sqrt(df_bond_contrast * ln(1 + t_bond_contrast ^ 2 / df_bond_contrast))
        * (8 * df_bond_contrast + 1) / (8 * df_bond_contrast + 3) as z_bond_contrast,
        sign(t_goal_task_contrast)
        * sqrt(df_goal_task_contrast * ln(1 + t_goal_task_contrast ^ 2 / df_goal_task_contrast))
        * (8 * df_goal_task_contrast + 1) / (8 * df_goal_task_contrast + 3)
            as z_goal_task_contrast,
        sign(t_pair) * sqrt(df_pair * ln(1 + t_pair ^ 2 / df_pair))
        * (8 * df_pair + 1) / (8 * df_pair + 3) as z_pair_raw
    from moderated
),

pair_gated as (
    -- the pair counts only when both sessions fell below the earlier level by the clinic's
    -- minimum drop (a dip followed by a return is the single-session statistic's to judge)
    select
        *,
        case
            when pair_baseline - previous_total >= min_drop_sd * clinic_sd
                and pair_baseline - total >= min_drop_sd * clinic_sd
                then z_pair_raw
        end as z_pair
    from deflections
),

scored as (
    select
        *,
        greatest(z_bond_contrast, z_goal_task_contrast) as z_part,
        -- the strongest direction of the drop, each a normal deviate under no rupture: the
        -- whole fell (z_total), or the whole fell with one part falling against the rest
        -- ((z_total + z_contrast) / sqrt 2: the contrast carries no shared session swing, so a
        -- rupture in one part stands out of an off day that lowers every item alike); a part
        -- with a missing item has no contrast and leaves the whole alone
        greatest(
            z_total,
            (z_total + z_bond_contrast) / sqrt(2),
            (z_total + z_goal_task_contrast) / sqrt(2),
            z_pair
        ) as flag_score,
        coalesce(
            n_prior >= min_history
            and (delta_baseline >= min_drop_sd * clinic_sd or z_pair is not null),
            false
        ) as is_candidate
    from pair_gated
)

select * from scored
