-- The flag threshold of each clinic with an alert budget (`thresholds.alert_budget`: the share
-- of alliance sessions it wants flagged), per instrument, week and stage of the course: the
-- alert score (the flag score, or the CUSUM on its scale) above which that share of the
-- clinic's alliance sessions of EARLIER weeks at the same stage fall, counting only candidates
-- (a drop of at least the minimum size after enough history). So the clinic gets the alert rate
-- it chose whatever its noise. The quantile is over the last 6 weeks, so that it
-- follows a clinic whose case mix moves.
-- Stages (sessions before this one: 0-2, 3-4, 5-7, 8-11, 12+) are judged apart because ruptures
-- and sustained declines grow more common as courses go on: a young clinic's earlier weeks hold
-- mostly early sessions, and one threshold over all of them would lag behind. A stage with fewer
-- than a fifth of `budget_min_sessions` earlier sessions uses the clinic's threshold over all
-- stages; a clinic with fewer than `budget_min_sessions` has none, and the default evidence
-- threshold applies (the prior). A trailing quantile still lags a clinic whose share of
-- sessions inside ruptures moves week by week, so the quantile's level is corrected by how far
-- the uncorrected rule's rate over the last 6 earlier weeks was from the budget (`corrections`).
-- Scores are binned at 0.05: exact running quantiles cost minutes at scale.
with scores as (
    select
        s.param_key,
        s.week_start,
        s.course_stage as stage,
        s.is_candidate,
        -- the alert score: the flag score, or the CUSUM on its scale (rupture_signals)
        greatest(s.flag_score, c.cusum * s.flag_evidence / s.cusum_h) as alert_score
    from detect_rupture_scores as s
    inner join detect_params as p
        on s.param_key = p.param_key
    inner join detect_decline_cusum as c
        on s.series_key = c.series_key
        and s.session_number = c.session_number
    where p.alert_budget is not null
),

staged as (
    -- stage -1: every stage together
    select * from scores
    union all
    select * replace (-1 as stage) from scores
),

weeks as (
    select distinct
        param_key,
        week_start
    from scores
),

stages as (
    select
        w.param_key,
        w.week_start,
        s.stage
    from weeks as w
    cross join (select unnest([-1, 0, 1, 2, 3, 4]) as stage) as s
),

counts as (
    select
        param_key,
        week_start,
        stage,
        count(*) as n_sessions
    from staged
    group by all
),

counts_before as (
    select
        g.param_key,
        g.week_start,
        g.stage,
        coalesce(
            sum(c.n_sessions) over (
                partition by g.param_key, g.stage
                order by g.week_start
                rows between 6 preceding and 1 preceding
            ),
            0
        ) as n_sessions_before,
        coalesce(
            sum(c.n_sessions) over (
                partition by g.param_key, g.stage
                order by g.week_start
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as n_history
    from stages as g
    left join counts as c
        on g.param_key = c.param_key
        and g.week_start = c.week_start
        and g.stage = c.stage
),

bins as (
    select
        param_key,
        week_start,
        stage,
        floor(least(greatest(alert_score, -50), 50) * 20)::integer as bin,
        count(*) as n
    from staged
    where is_candidate and alert_score is not null
    group by all
),

grid as (
    select
        g.param_key,
        g.week_start,
        g.stage,
        b.bin,
        coalesce(h.n, 0) as n
    from stages as g
    inner join (select distinct param_key, stage, bin from bins) as b
        on g.param_key = b.param_key
        and g.stage = b.stage
    left join bins as h
        on h.param_key = g.param_key
        and h.week_start = g.week_start
        and h.stage = g.stage
        and h.bin = b.bin
),

earlier as (
    select
        *,
        coalesce(
            sum(n) over (
                partition by param_key, stage, bin
                order by week_start
                rows between 6 preceding and 1 preceding
            ),
            0
        ) as n_before
    from grid
),

tails as (
    -- candidates of earlier weeks scoring at or above each bin
    select
        *,
        sum(n_before) over (
            partition by param_key, week_start, stage
            order by bin desc
            rows between unbounded preceding and current row
        ) as n_at_or_above
    from earlier
),

uncorrected_stage as (
    -- each stage's quantile at the clinic's budget: the lowest bin whose tail stays within it;
    -- none qualifies: above all
    select
        c.param_key,
        c.week_start,
        c.stage,
        c.n_sessions_before,
        c.n_history,
        coalesce(
            min(t.bin) filter (where t.n_at_or_above <= p.alert_budget * c.n_sessions_before)
            / 20.0,
            50.0
        ) as threshold
    from counts_before as c
    inner join detect_params as p
        on c.param_key = p.param_key
    left join tails as t
        on c.param_key = t.param_key
        and c.week_start = t.week_start
        and c.stage = t.stage
    group by all
),

uncorrected as (
    -- the rule without correction: a stage's own quantile, the clinic's over all stages for a
    -- stage with little history, none (the default evidence threshold) for a young clinic
    select
        s.param_key,
        s.week_start,
        s.stage,
        case
            when a.n_history < p.budget_min_sessions then p.flag_evidence
            when s.n_sessions_before * 5 < p.budget_min_sessions then a.threshold
            else s.threshold
        end as threshold
    from uncorrected_stage as s
    inner join uncorrected_stage as a
        on s.param_key = a.param_key
        and s.week_start = a.week_start
        and a.stage = -1
    inner join detect_params as p
        on s.param_key = p.param_key
    where s.stage >= 0
),

realized as (
    -- per week: the sessions, and the candidates the uncorrected rule would have flagged
    select
        u.param_key,
        u.week_start,
        count(s.param_key) as n_sessions,
        count(s.param_key) filter (where s.is_candidate and s.alert_score >= u.threshold)
            as n_flagged
    from uncorrected as u
    left join scores as s
        on u.param_key = s.param_key
        and u.week_start = s.week_start
        and u.stage = s.stage
    group by all
),

corrections as (
    -- A trailing quantile lags a clinic whose share of sessions inside ruptures grows week by
    -- week (a young clinic filling up, sustained ruptures accumulating) or falls: applied to
    -- the weeks it judged, the rule flags more (or fewer) than the budget. Its realized rate
    -- over the last 6 earlier weeks (the default evidence threshold of a young clinic's first
    -- weeks included: those flags count in the clinic's rate too) is known by each week; the
    -- quantile level is scaled by budget / realized rate (bounded to half and one and a half
    -- times the budget). The uncorrected rule's rate, not the corrected one's: that is not
    -- recursive, and its lag is what is corrected. Earlier weeks only: no look-ahead.
    select
        r.param_key,
        r.week_start,
        case
            when sum(r.n_sessions) over w_recent > 0
                then least(
                    greatest(
                        p.alert_budget * p.alert_budget * sum(r.n_sessions) over w_recent
                        / greatest(sum(r.n_flagged) over w_recent, 0.5),
                        0.5 * p.alert_budget
                    ),
                    1.5 * p.alert_budget
                )
        end as corrected_budget
    from realized as r
    inner join detect_params as p
        on r.param_key = p.param_key
    window
        w_recent as (
            partition by r.param_key
            order by r.week_start
            rows between 6 preceding and 1 preceding
        )
),

stage_thresholds as (
    -- each stage's quantile at the budget corrected for the lag of the uncorrected rule: the
    -- lowest bin whose tail stays within it; none qualifies: above all
    select
        c.param_key,
        c.week_start,
        c.stage,
        c.n_sessions_before,
        c.n_history,
        coalesce(
            min(t.bin) filter (
                where t.n_at_or_above <= coalesce(k.corrected_budget, p.alert_budget)
                * c.n_sessions_before
            )
            / 20.0,
            50.0
        ) as corrected_threshold
    from counts_before as c
    inner join detect_params as p
        on c.param_key = p.param_key
    left join tails as t
        on c.param_key = t.param_key
        and c.week_start = t.week_start
        and c.stage = t.stage
    left join corrections as k
        on c.param_key = k.param_key
        and c.week_start = k.week_start
    group by all
),

thresholds as (
    select
        s.param_key,
        s.week_start,
        s.stage,
        case
            when a.n_history < p.budget_min_sessions then null
            when s.n_sessions_before * 5 < p.budget_min_sessions then a.corrected_threshold
            else s.corrected_threshold
        end as budget_threshold,
        -- the clinic's threshold over all stages, for the calibration record
        case when a.n_history >= p.budget_min_sessions then a.corrected_threshold end
            as clinic_threshold
    from stage_thresholds as s
    inner join stage_thresholds as a
        on s.param_key = a.param_key
        and s.week_start = a.week_start
        and a.stage = -1
    inner join detect_params as p
        on s.param_key = p.param_key
    where s.stage >= 0
)

select * from thresholds
