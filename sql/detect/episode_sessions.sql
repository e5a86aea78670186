-- Every alliance session with its flag context, severity and place in the client's alert
-- episodes. An episode opens at a flag when no episode is open; it stays open until the alliance
-- is back within reliable change of the baseline the latest flag fell from, for two sessions
-- running (repaired). A flag inside an open episode is new again only when it escalates the
-- episode's severity. A session of an open episode that is not flagged itself but is still
-- reliably below that baseline is flagged as ongoing (low severity, never new).
-- Four window passes over one integer key; every frame ends at the current session.
with signals as (
    -- only what the episode passes need: each window pass sorts every column it carries
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
        previous_total,
        baseline_total,
        reliable_change,
        n_missed_since_previous,
        is_flag,
        is_reliable_drop,
        is_deflection,
        is_below_cutoff,
        is_symptom_deterioration
    from detect_rupture_signals
),

context as (
    -- pass 1: the previous session's flag and the repair state as of this and the previous session
    select
        *,
        -- withdrawal: a cancellation or no-show since the previous session, right after a flag
        n_missed_since_previous > 0
        and (is_flag or coalesce(lag(is_flag) over w_series, false)) as is_disengagement,
        -- the baseline the latest flag fell from: the level a repair has to come back to
        last_value(case when is_flag then baseline_total end ignore nulls) over w_upto
            as reference_baseline,
        max(case when is_flag then session_number end) over w_upto as last_flag_session,
        last_value(case when is_flag then baseline_total end ignore nulls) over w_before
            as previous_reference_baseline,
        max(case when is_flag then session_number end) over w_before as previous_last_flag_session,
        lag(is_flag) over w_series as previous_is_flag
    from signals
    window
        w_series as (partition by series_key order by session_number),
        w_upto as (
            partition by series_key
            order by session_number
            rows between unbounded preceding and current row
        ),
        w_before as (
            partition by series_key
            order by session_number
            rows between unbounded preceding and 1 preceding
        )
),

recovered as (
    select
        *,
        case
            when not is_flag then 0
            when is_reliable_drop
                and (is_below_cutoff or is_symptom_deterioration or is_disengagement) then 3
            when is_reliable_drop or is_deflection then 2
            else 1
        end as severity_rank,
        not is_flag
        and last_flag_session is not null
        and (reference_baseline is null or total >= reference_baseline - reliable_change)
            as is_recovered,
        coalesce(
            not previous_is_flag
            and previous_last_flag_session is not null
            and (
                previous_reference_baseline is null
                or previous_total >= previous_reference_baseline - reliable_change
            ),
            false
        ) as is_previous_recovered
    from context
),

counted as (
    -- pass 2: repairs so far (a repair = two recovered sessions running)
    select
        *,
        is_recovered and is_previous_recovered as is_repair_point,
        sum(case when is_recovered and is_previous_recovered then 1 else 0 end) over (
            partition by series_key
            order by session_number
            rows between unbounded preceding and current row
        )::bigint as n_repairs_upto
    from recovered
),

opened as (
    -- pass 3: all flags of one episode share n_repairs_upto (no repair inside an episode), so the
    -- latest earlier flag's (repairs, severity) tells whether this flag opens or escalates one
    select
        *,
        max(case when is_flag then n_repairs_upto * 10 + severity_rank end) over (
            partition by series_key
            order by session_number
            rows between unbounded preceding and 1 preceding
        ) as previous_flag_code
    from counted
),

marked as (
    select
        *,
        is_flag and coalesce(previous_flag_code // 10 < n_repairs_upto, true) as is_opening,
        is_flag
        and previous_flag_code // 10 = n_repairs_upto
        and severity_rank > previous_flag_code % 10 as is_escalation
    from opened
),

placed as (
    -- pass 4: every session carries the episode opened most recently (flagged or not)
    select
        *,
        max(case when is_opening then session_number end) over w_upto as opened_session,
        max(case when is_opening then n_repairs_upto end) over w_upto as opened_repairs
    from marked
    window w_upto as (
        partition by series_key
        order by session_number
        rows between unbounded preceding and current row
    )
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
