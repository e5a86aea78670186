-- A one-sided CUSUM of each series' standardized drops (Page 1954), S_t = max(0, S_t-1 + z_t - k)
-- with k = cusum_k: it catches a decline over several sessions that no single session shows.
-- In closed form S_t = C_t - min(0, min over j <= t of C_j), C the running sum of (z - k): two
-- window passes over narrow rows (a window sorts every column it carries), joined back by the
-- signals. The steps are summed exactly, as whole millionths (a bigint: as fast as the doubles,
-- where a decimal(38, 9) sum cost ~5 CPU s at 10M rows): a running sum of doubles depends on
-- the order DuckDB adds them in, and an incremental run must give the digits of a full one (the
-- CUSUM is part of each flag's evidence and of its decision).
with drops as (
    -- with what the alert score needs, so that alert_thresholds reads it here instead of
    -- evaluating the scores view a third time (~5 CPU s at 10M rows), and rupture_signals and
    -- alert_thresholds judge the same score
    select
        series_key,
        session_number,
        round(least(greatest(coalesce(z_total, 0) - cusum_k, -1e6), 1e6) * 1e6)::bigint as step,
        param_key,
        week_start,
        is_candidate,
        flag_score,
        flag_evidence,
        cusum_h
    from detect_rupture_scores
),

running as (
    select
        * exclude (step),
        sum(step) over (
            partition by series_key
            order by session_number
            rows between unbounded preceding and current row
        ) as cusum_sum
    from drops
),

cusum as (
    select
        * exclude (cusum_sum),
        (
            cusum_sum - least(
                0,
                min(cusum_sum) over (
                    partition by series_key
                    order by session_number
                    rows between unbounded preceding and current row
                )
            )
        )::double / 1e6 as cusum
    from running
)

select
    series_key,
    session_number,
    cusum,
    param_key,
    week_start,
    is_candidate,
    -- the alert score: the flag score, or the CUSUM on its scale (cusum_h meets flag_evidence)
    greatest(flag_score, cusum * flag_evidence / cusum_h) as alert_score
from cusum
