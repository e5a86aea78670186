-- Each clinic's own scale for "a drop", per instrument and calendar week, from the clinic's
-- sessions of EARLIER weeks only (no look-ahead: a session is judged with what was known before
-- its week began). Per measure (the total; the bond part and the goal/task part, each against
-- the whole: a part's per-item mean minus the total's, in which the session's shared swing
-- cancels):
--   * pooled_var: the clinic's pooled within-client variance, taken robustly (the median of the
--     scaled one-step prediction residuals, over the median of chi-square with 1 df) so that
--     ruptures in it do not inflate it; blended with the registry's prior by `prior_sessions`
--     pseudo-sessions, so a new clinic starts at the prior and moves to its own data;
--   * prior_df: the empirical-Bayes prior weight d0 with which a client's own variance is shrunk
--     toward pooled_var (Smyth 2004): from the spread of the clients' log variances, less what
--     sampling alone explains (trigamma of half their degrees of freedom); a clinic whose clients
--     are alike gets a large d0 (clients lean on the clinic), a clinic mixing stable and noisy
--     clients a small one (clients lean on their own history); blended with the prior d0 too.
-- Medians and quartiles come from cumulative histograms (16 bins per octave): an exact windowed
-- quantile over every earlier session costs minutes at scale, the histogram a fraction of a
-- second. Sums are exact decimals, so an incremental run gives the digits of a full one.
with params as (
    select * from detect_params
),

features as (
    -- per session and measure (0 the total, 1 the bond part against the whole, 2 the goal/task
    -- part against the whole, 3 the total below its prediction): the bin of the scaled residual (for the median), and the bin of
    -- the running variance once it rests on 3 degrees of freedom or more (for the quartiles);
    -- null where there is none
    select
        f.param_key,
        f.week_start,
        f.n_prior - 1 as df,
        case when f.u_total <= 0 then -100000 else floor(log2(f.u_total) * 16)::integer end
            as residual_bin_0,
        case
            when f.u_bond_contrast <= 0 then -100000
            else floor(log2(f.u_bond_contrast) * 16)::integer
        end as residual_bin_1,
        case
            when f.u_goal_task_contrast <= 0 then -100000
            else floor(log2(f.u_goal_task_contrast) * 16)::integer
        end as residual_bin_2,
        -- 3: the total's residual when the session fell below its prediction (the clinic's
        -- downside variance, rupture_scores' clinic_skew)
        case
            when f.is_down = 0 then null
            when f.u_total <= 0 then -100000
            else floor(log2(f.u_total) * 16)::integer
        end as residual_bin_3,
        case when f.n_prior >= 4 and f.baseline_sd is not null then
            floor(log2(greatest(f.baseline_sd ^ 2, p.variance_floor)) * 16)::integer
        end as variance_bin_0,
        case when f.n_prior >= 4 and f.baseline_bond_contrast_sd is not null then
            floor(log2(greatest(f.baseline_bond_contrast_sd ^ 2, p.variance_floor)) * 16)::integer
        end as variance_bin_1,
        case when f.n_prior >= 4 and f.baseline_goal_task_contrast_sd is not null then
            floor(
                log2(greatest(f.baseline_goal_task_contrast_sd ^ 2, p.variance_floor)) * 16
            )::integer
        end as variance_bin_2
    from detect_alliance_features as f
    inner join params as p
        on f.param_key = p.param_key
),

variance_dfs as (
    -- sessions whose variance entered the spread, per degrees of freedom (df takes few values)
    select
        param_key,
        week_start,
        df,
        count(variance_bin_0) as n_0,
        count(variance_bin_1) as n_1,
        count(variance_bin_2) as n_2
    from features
    group by param_key, week_start, df
),

weeks as (
    select distinct
        param_key,
        week_start
    from variance_dfs
),

bins as (
    -- kind 0: residuals (for the median), kind 1: log variances (for the quartiles)
    select param_key, week_start, 0 as measure, 0 as kind, residual_bin_0 as bin, count(*) as n
    from features where residual_bin_0 is not null group by all
    union all
    select param_key, week_start, 1, 0, residual_bin_1, count(*)
    from features where residual_bin_1 is not null group by all
    union all
    select param_key, week_start, 2, 0, residual_bin_2, count(*)
    from features where residual_bin_2 is not null group by all
    union all
    select param_key, week_start, 3, 0, residual_bin_3, count(*)
    from features where residual_bin_3 is not null group by all
    union all
    select param_key, week_start, 0, 1, variance_bin_0, count(*)
    from features where variance_bin_0 is not null group by all
    union all
    select param_key, week_start, 1, 1, variance_bin_1, count(*)
    from features where variance_bin_1 is not null group by all
    union all
    select param_key, week_start, 2, 1, variance_bin_2, count(*)
    from features where variance_bin_2 is not null group by all
),

sampling as (
    -- mean sampling variance of a log variance with df degrees of freedom, trigamma(df / 2),
    -- over the earlier weeks' sessions whose variance entered the spread
    select
        param_key,
        week_start,
        measure,
        sum(n * aw_trigamma(df / 2.0)::decimal(18, 9)) as sum_trigamma
    from (
        select param_key, week_start, 0 as measure, df, n_0 as n from variance_dfs where n_0 > 0
        union all
        select param_key, week_start, 1, df, n_1 from variance_dfs where n_1 > 0
        union all
        select param_key, week_start, 2, df, n_2 from variance_dfs where n_2 > 0
    )
    group by all
),

grid as (
    -- every week of the clinic x every bin the clinic ever used, so that a cumulative window
    -- over the weeks carries each bin's count forward
    select
        w.param_key,
        w.week_start,
        b.measure,
        b.kind,
        b.bin,
        coalesce(h.n, 0) as n
    from weeks as w
    inner join (select distinct param_key, measure, kind, bin from bins) as b
        on w.param_key = b.param_key
    left join bins as h
        on h.param_key = w.param_key
        and h.week_start = w.week_start
        and h.measure = b.measure
        and h.kind = b.kind
        and h.bin = b.bin
),

earlier as (
    -- counts over the weeks before each week
    select
        *,
        coalesce(
            sum(n) over (
                partition by param_key, measure, kind, bin
                order by week_start
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as n_before
    from grid
),

ranked as (
    select
        *,
        sum(n_before) over (
            partition by param_key, week_start, measure, kind
            order by bin
            rows between unbounded preceding and current row
        ) as n_running,
        sum(n_before) over (partition by param_key, week_start, measure, kind) as n_total
    from earlier
),

quantiles as (
    select
        param_key,
        week_start,
        measure,
        kind,
        max(n_total) as n,
        min(bin) filter (where n_total > 0 and n_running * 4 >= n_total) as q25_bin,
        min(bin) filter (where n_total > 0 and n_running * 2 >= n_total) as median_bin,
        min(bin) filter (where n_total > 0 and n_running * 4 >= 3 * n_total) as q75_bin
    from ranked
    group by all
),

sampling_earlier as (
    select
        w.param_key,
        w.week_start,
        m.measure,
        coalesce(
            sum(s.sum_trigamma) over (
                partition by w.param_key, m.measure
                order by w.week_start
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as sum_trigamma_before
    from weeks as w
    cross join (select unnest([0, 1, 2]) as measure) as m
    left join sampling as s
        on w.param_key = s.param_key
        and w.week_start = s.week_start
        and m.measure = s.measure
),

estimates as (
    select
        w.param_key,
        w.week_start,
        m.measure,
        coalesce(r.n, 0) as n_residuals,
        case
            when r.median_bin is null then null
            when r.median_bin = -100000 then 0.0
            -- bin midpoint; over the median of chi-square(1)
            else pow(2.0, (r.median_bin + 0.5) / 16.0) / 0.4549364
        end as residual_var,
        coalesce(v.n, 0) as n_variances,
        -- spread of the log variances: interquartile range / 1.349, natural log units
        ((v.q75_bin - v.q25_bin) / 16.0 * ln(2.0) / 1.349) ^ 2 as log_var_spread,
        s.sum_trigamma_before / nullif(v.n, 0) as mean_trigamma
    from weeks as w
    cross join (select unnest([0, 1, 2, 3]) as measure) as m
    left join quantiles as r
        on w.param_key = r.param_key
        and w.week_start = r.week_start
        and m.measure = r.measure
        and r.kind = 0
    left join quantiles as v
        on w.param_key = v.param_key
        and w.week_start = v.week_start
        and m.measure = v.measure
        and v.kind = 1
    left join sampling_earlier as s
        on w.param_key = s.param_key
        and w.week_start = s.week_start
        and m.measure = s.measure
),

prior_df as (
    select
        *,
        -- trigamma(d0 / 2) = spread - sampling part; invert 1/x + 1/(2x^2) = t for x = d0 / 2
        case
            when n_variances = 0 then null
            when log_var_spread - mean_trigamma <= 0.02 then 100.0
            else least(
                100.0,
                (1 + sqrt(1 + 2 * (log_var_spread - mean_trigamma)))
                / (log_var_spread - mean_trigamma)
            )
        end as df_estimate
    from estimates
),

blended as (
    select
        d.param_key,
        d.week_start,
        d.measure,
        d.n_residuals,
        (
            p.prior_sessions
            * case when d.measure in (0, 3) then p.prior_var_total else p.prior_var_contrast end
            + d.n_residuals * coalesce(d.residual_var, 0)
        ) / (p.prior_sessions + d.n_residuals) as pooled_var,
        (p.prior_sessions * p.prior_df + d.n_variances * coalesce(d.df_estimate, 0))
        / (p.prior_sessions + d.n_variances) as prior_df
    from prior_df as d
    inner join params as p
        on d.param_key = p.param_key
),

calibration as (
    select
        param_key,
        week_start,
        max(n_residuals) filter (where measure = 0) as n_calibration_sessions,
        max(pooled_var) filter (where measure = 0) as pooled_var_total,
        max(pooled_var) filter (where measure = 1) as pooled_var_bond,
        max(pooled_var) filter (where measure = 2) as pooled_var_goal_task,
        -- the median of the squared residuals below the prediction: under a symmetric
        -- distribution the same as pooled_var_total, larger where clients fall further than
        -- they rise
        max(pooled_var) filter (where measure = 3) as pooled_var_total_down,
        max(prior_df) filter (where measure = 0) as prior_df_total,
        max(prior_df) filter (where measure = 1) as prior_df_bond,
        max(prior_df) filter (where measure = 2) as prior_df_goal_task
    from blended
    group by param_key, week_start
)

select * from calibration
