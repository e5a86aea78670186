-- Every alliance session placed in the client's alert episodes. An episode opens at a flag when
-- no episode is open; it stays open through later sessions until the alliance is back within
-- reliable change of the baseline it had fallen from, for two sessions running (repaired). A
-- flag inside an open episode is new again only when it escalates the episode's severity. A
-- session of an open episode that is not flagged itself but is still reliably below the baseline
-- the episode fell from is flagged as ongoing (low severity, never new): the rupture persists.
with signals as (
    select
        series_key,
        client_key,
        clinic_id,
        client_id,
        clinician_id,
        session_number,
        session_date,
        instrument,
        total,
        baseline_total,
        reliable_change,
        is_flag,
        severity_rank
    from detect_rupture_signals
),

referenced as (
    select
        *,
        -- the baseline the latest flag fell from: the level a repair has to come back to
        last_value(case when is_flag then baseline_total end ignore nulls) over w_upto
            as reference_baseline,
        max(case when is_flag then session_number end) over w_upto as last_flag_session
    from signals
    window w_upto as (
        partition by series_key
        order by session_number
        rows between unbounded preceding and current row
    )
),

recovered as (
    select
        *,
        not is_flag
        and last_flag_session is not null
        and (reference_baseline is null or total >= reference_baseline - reliable_change)
            as is_recovered
    from referenced
),

closures as (
    select
        *,
        is_recovered
        and coalesce(
            lag(is_recovered) over (
                partition by series_key
                order by session_number
            ),
            false
        ) as is_repair_point
    from recovered
),

counted as (
    select
        *,
        sum(case when is_repair_point then 1 else 0 end) over (
            partition by series_key
            order by session_number
            rows between unbounded preceding and current row
        ) as n_repairs_upto
    from closures
),

flagged as (
    select
        series_key,
        session_number,
        severity_rank,
        n_repairs_upto,
        -- an episode opens at the first flag, or at the first flag after a repair
        coalesce(
            lag(n_repairs_upto) over (
                partition by series_key
                order by session_number
            ) < n_repairs_upto,
            true
        ) as is_opening
    from counted
    where is_flag
),

numbered as (
    select
        *,
        max(case when is_opening then session_number end) over w_flags as opened_session,
        max(case when is_opening then n_repairs_upto end) over w_flags as opened_repairs
    from flagged
    window w_flags as (
        partition by series_key
        order by session_number
        rows between unbounded preceding and current row
    )
),

escalations as (
    select
        *,
        max(severity_rank) over (
            partition by series_key, opened_session
            order by session_number
            rows between unbounded preceding and 1 preceding
        ) as previous_max_rank
    from numbered
),

placed as (
    select
        c.*,
        e.is_opening,
        not e.is_opening and e.severity_rank > e.previous_max_rank as is_escalation,
        -- every session carries the episode opened most recently (flagged or not)
        max(e.opened_session) over (
            partition by c.series_key
            order by c.session_number
            rows between unbounded preceding and current row
        ) as opened_session,
        max(e.opened_repairs) over (
            partition by c.series_key
            order by c.session_number
            rows between unbounded preceding and current row
        ) as opened_repairs
    from counted as c
    left join escalations as e
        on c.series_key = e.series_key
        and c.session_number = e.session_number
),

ongoing as (
    select
        *,
        -- no repair since the episode opened, and not back within reliable change
        not is_flag
        and opened_session is not null
        and n_repairs_upto = opened_repairs
        and not is_recovered as is_ongoing
    from placed
)

select
    *,
    is_flag or is_ongoing as is_flagged,
    case
        when opened_session is not null
            then concat_ws(':', clinic_id, client_id, instrument, opened_session::varchar)
    end as alert_episode_id
from ongoing
