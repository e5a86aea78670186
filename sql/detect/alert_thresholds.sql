-- The flag threshold of each clinic with an alert budget (`thresholds.alert_budget`: the share
-- of alliance sessions it wants flagged), per instrument and week: the alert score (the flag
-- score, or the CUSUM on its scale) above which a share of the clinic's candidate sessions of
-- the last 6 EARLIER weeks fall (more weeks where 6 hold fewer than `budget_min_sessions`
-- sessions), so that the clinic gets the alert rate it chose whatever its noise.
--
-- A trailing quantile alone lags a clinic whose case mix moves (a young clinic filling up with
-- later sessions, sustained ruptures accumulating), and a small clinic's quantile of a few
-- dozen sessions misses by a few flags either way; nothing would pay those back. So the share
-- asked of the quantile is steered by what the clinic has actually been flagged so far (an
-- integral controller): the budget plus the clinic's running balance (sessions x budget less
-- flags, the older weeks' part fading by `budget_forget` a week) spread over the next window's
-- sessions, bounded to 0.25-2 x the budget. The flags a week gets depend on its threshold, and
-- the next week's threshold on them: one recursive pass over each clinic's weeks, in order,
-- whose every step reads only earlier weeks (no look-ahead).
--
-- A clinic with no budget has a ceiling instead (`thresholds.alert_ceiling`, default 0.085):
-- the same controller with the ceiling as its budget, whose threshold applies only when it lies
-- above `flag_evidence` and the clinic's balance is overdrawn by more than one binomial SD of
-- its faded sessions' expected flags (sqrt(ceiling x faded sessions)). Below its ceiling a
-- clinic keeps the default threshold and banks credit, so a small clinic's week of clustered
-- ruptures does not raise its bar; a clinic flagged above its ceiling week after week does.
--
-- A clinic with fewer than `budget_min_sessions` earlier alliance sessions has too few for a
-- quantile: the default evidence threshold applies (the prior), and its flags count in the
-- balance. Scores are binned at 0.05: exact running quantiles cost minutes at scale.
with recursive targets as (
    -- the clinics with a budget, or else a ceiling, as the controller's target share; the
    -- bounds of the share it may ask of a week's quantile (the recursion's, and the reach of
    -- the bins it is given)
    select
        param_key,
        coalesce(alert_budget, alert_ceiling) as target,
        -- a budget steers both ways; a ceiling (no budget) only ever raises the threshold
        alert_budget is null as is_ceiling,
        0.25 * coalesce(alert_budget, alert_ceiling) as min_share,
        2.0 * coalesce(alert_budget, alert_ceiling) as max_share,
        flag_evidence,
        budget_min_sessions,
        budget_forget,
        budget_gain
    from detect_params
    where alert_budget is not null or alert_ceiling is not null
),

scores as (
    -- decline_cusum carries each session's alert score (the flag score, or the CUSUM on its
    -- scale), the one rupture_signals judges
    select
        c.param_key,
        c.week_start,
        c.is_candidate,
        p.flag_evidence,
        c.alert_score
    from detect_decline_cusum as c
    inner join targets as p
        on c.param_key = p.param_key
),

weekly as (
    -- each week with an alliance session: its sessions, and the flags the default threshold
    -- gives it (a young clinic's rule)
    select
        param_key,
        week_start,
        count(*) as n_sessions,
        count(*) filter (where is_candidate and alert_score >= flag_evidence) as n_default
    from scores
    group by all
),

numbered as (
    select
        *,
        row_number() over (partition by param_key order by week_start) as week_no,
        coalesce(
            sum(n_sessions) over (
                partition by param_key
                order by week_start
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as n_history
    from weekly
),

weeks as (
    -- the quantile's window: the last 6 weeks with a session, or as many more as it takes to
    -- hold `budget_min_sessions` sessions (a clinic of five sessions a week would otherwise
    -- take its 5 % quantile from the second-highest of ~30 scores, and its threshold would
    -- swing with each week's few candidates). The nearest earlier week j from which the weeks
    -- j .. this one - 1 hold that many (n_history rises every week: an as-of join)
    select
        w.*,
        greatest(6, coalesce(w.week_no - j.week_no, 6)) as lookback
    from numbered as w
    inner join targets as p
        on w.param_key = p.param_key
    asof left join numbered as j
        on w.param_key = j.param_key
        and w.n_history - p.budget_min_sessions >= j.n_history
),

history as (
    select
        *,
        coalesce(
            sum(n_sessions) over (
                partition by param_key
                order by week_no
                rows between lookback preceding and 1 preceding
            ),
            0
        ) as n_recent
    from weeks
),

bins as (
    select
        w.param_key,
        w.week_no,
        floor(least(greatest(s.alert_score, -50), 50) * 20)::integer as bin,
        count(*) as n
    from scores as s
    inner join weeks as w
        on s.param_key = w.param_key
        and s.week_start = w.week_start
    where s.is_candidate and s.alert_score is not null
    group by all
),

grid as (
    -- every week x every bin the clinic's candidates ever reached
    select
        w.param_key,
        w.week_no,
        w.lookback,
        b.bin,
        coalesce(h.n, 0) as n
    from weeks as w
    inner join (select distinct param_key, bin from bins) as b
        on w.param_key = b.param_key
    left join bins as h
        on w.param_key = h.param_key
        and w.week_no = h.week_no
        and b.bin = h.bin
),

earlier as (
    select
        *,
        coalesce(
            sum(n) over (
                partition by param_key, bin
                order by week_no
                rows between lookback preceding and 1 preceding
            ),
            0
        ) as n_before
    from grid
),

tails as (
    -- per week and bin: candidates of the 6 earlier weeks scoring at or above the bin, and the
    -- week's own candidates at or above it (the flags that bin as a threshold gives)
    select
        param_key,
        week_no,
        bin,
        sum(n_before) over w_down as n_recent_at_or_above,
        sum(n) over w_down as n_week_at_or_above
    from earlier
    window
        w_down as (
            partition by param_key, week_no
            order by bin desc
            rows between unbounded preceding and current row
        )
),

tail_lists as (
    -- one row per clinic and week for the recursion (a join of each step with every bin of
    -- the clinic cost ~20 CPU s at 10M rows): the bins whose recent tail the steered share can
    -- reach (at most max_share of the recent sessions) as a list, and the highest bin beyond
    -- that reach (its tail exceeds every share the controller can ask)
    select
        t.param_key,
        t.week_no,
        list({'bin': t.bin, 'recent': t.n_recent_at_or_above, 'week': t.n_week_at_or_above})
            filter (where t.n_recent_at_or_above <= r.most_allowed) as reachable,
        max(t.bin) filter (where t.n_recent_at_or_above > r.most_allowed) as beyond_bin
    from tails as t
    inner join history as h
        on t.param_key = h.param_key
        and t.week_no = h.week_no
    inner join targets as p
        on t.param_key = p.param_key
    cross join lateral (select p.max_share * h.n_recent as most_allowed) as r
    group by t.param_key, t.week_no
),

steps as (
    -- one row per clinic and week: what the recursion reads
    select
        h.param_key,
        h.week_no,
        h.n_sessions,
        h.n_default,
        h.n_recent,
        h.n_history < p.budget_min_sessions as is_young,
        p.target,
        p.is_ceiling,
        p.min_share,
        p.max_share,
        p.flag_evidence,
        p.budget_forget,
        p.budget_gain,
        l.reachable,
        l.beyond_bin
    from history as h
    inner join targets as p
        on h.param_key = p.param_key
    left join tail_lists as l
        on h.param_key = l.param_key
        and h.week_no = l.week_no
),

control (param_key, week_no, balance, n_weighted, threshold_bin, n_flagged) as (
    -- week 0: nothing flagged, nothing owed
    select distinct
        param_key,
        0::bigint,
        0.0::double,
        0.0::double,
        null::integer,
        0::bigint
    from steps
    union all
    select
        c.param_key,
        s.week_no,
        -- the balance after this week: the older part fades, this week's budget less its flags
        s.budget_forget * c.balance + s.target * s.n_sessions - f.n_flagged,
        s.budget_forget * c.n_weighted + s.n_sessions,
        b.threshold_bin,
        f.n_flagged
    from control as c
    inner join steps as s
        on c.param_key = s.param_key
        and s.week_no = c.week_no + 1
    -- the share the controller asks of the recent weeks' candidates
    cross join lateral (
        select
            s.n_recent * least(
                greatest(
                    s.target + s.budget_gain * c.balance / greatest(s.n_recent, 1), s.min_share
                ),
                s.max_share
            ) as allowed
    ) as a
    -- the lowest bin whose recent tail stays within that share: one above the highest bin
    -- whose tail exceeds it (none: every bin, -1000 = score -50). Taken from the bins the
    -- earlier weeks reached, never the minimum over the clinic's bins, which later weeks add
    -- to (look-ahead). The week's flags at it: its candidates at or above the lowest bin within
    -- the share (a tail is non-increasing in the bin, so the largest such count)
    cross join lateral (
        select
            coalesce(
                list_max(
                    list_transform(list_filter(s.reachable, x -> x.recent > a.allowed), x -> x.bin)
                ) + 1,
                s.beyond_bin + 1,
                -1000
            ) as bin,
            coalesce(
                list_max(
                    list_transform(
                        list_filter(s.reachable, x -> x.recent <= a.allowed), x -> x.week
                    )
                ),
                0
            ) as n_at_threshold
    ) as r
    -- a ceiling's quantile below the default threshold leaves the default (null)
    cross join lateral (
        select
            case
                -- too young, or no session in the window: the default threshold
                when s.is_young or s.n_recent = 0 then null
                -- a ceiling binds only once the clinic's flags overran it by more than chance
                -- (one binomial SD of the faded sessions' expected flags), and only upward
                when s.is_ceiling
                    and (
                        c.balance >= -sqrt(s.target * greatest(c.n_weighted, 1))
                        or r.bin / 20.0 <= s.flag_evidence
                    )
                    then null
                else r.bin
            end as threshold_bin
    ) as b
    -- the week's flags: the default threshold's in a young clinic, else those at or above it
    cross join lateral (
        select
            case
                when b.threshold_bin is null then s.n_default
                else r.n_at_threshold
            end as n_flagged
    ) as f
)

select
    w.param_key,
    w.week_start,
    c.threshold_bin / 20.0 as budget_threshold,
    c.n_flagged,
    -- the sessions of the weeks the quantile rests on
    h.n_recent
from control as c
inner join history as h
    on c.param_key = h.param_key
    and c.week_no = h.week_no
inner join weeks as w
    on c.param_key = w.param_key
    and c.week_no = w.week_no
