-- The sessions that matter for alert episodes, with their flag context, severity and place in the
-- client's episodes. An episode opens at a flag when no episode is open; it stays open until the
-- alliance is back within reliable change of the baseline the latest flag fell from, for two
-- sessions running (repaired). A flag inside an open episode escalates it when its severity is
-- higher than every earlier flag of the episode. A session of an open episode that is not flagged
-- itself but is still reliably below that baseline is flagged as ongoing (low severity), unless
-- the clinic set an alert budget.
--
-- Two window passes over narrow rows of every session (each frame ends before or at the current
-- session), then one over the few sessions kept: flags, ongoing sessions and repair points.
with signals as (
    -- only what the episode passes need: each window pass sorts every column it carries
    select
        series_key,
        session_number,
        session_date,
        total,
        previous_total,
        baseline_total,
        reliable_change,
        n_missed_since_previous,
        alert_budget,
        is_clinic_threshold,
        is_flag,
        case
            when not is_flag then 0
            -- a flag with a miss since the previous session is a withdrawal (disengagement)
            when is_reliable_drop
                and (
                    is_below_cutoff or is_symptom_deterioration or n_missed_since_previous > 0
                ) then 3
            when is_reliable_drop or is_deflection then 2
            else 1
        end as severity_rank
    from detect_scoped_signals
),

context as (
    -- pass 1, everything known before this session: the previous session's flag, the latest
    -- earlier flag and the baseline it fell from (the level a repair has to come back to)
    select
        *,
        lag(is_flag) over w_series as previous_is_flag,
        max(case when is_flag then session_number end) over w_before as previous_flag_session,
        arg_max(baseline_total, case when is_flag then session_number end) over w_before
            as previous_reference_baseline
    from signals
    window
        w_series as (partition by series_key order by session_number),
        w_before as (
            partition by series_key
            order by session_number
            rows between unbounded preceding and 1 preceding
        )
),

recovered as (
    select
        *,
        -- as of this session: the latest flag and its baseline
        case when is_flag then session_number else previous_flag_session end
            as last_flag_session,
        case when is_flag then baseline_total else previous_reference_baseline end
            as reference_baseline,
        -- withdrawal: a cancellation or no-show since the previous session, right after a flag
        n_missed_since_previous > 0
        and (is_flag or coalesce(previous_is_flag, false)) as is_disengagement,
        -- back within reliable change of the baseline the latest flag fell from
        not is_flag
        and previous_flag_session is not null
        and (
            previous_reference_baseline is null
            or total >= previous_reference_baseline - reliable_change
        ) as is_recovered,
        -- the same for the previous session (as of then: the latest flag before it)
        coalesce(
            not previous_is_flag
            and previous_flag_session is not null
            and (
                previous_reference_baseline is null
                or previous_total >= previous_reference_baseline - reliable_change
            ),
            false
        ) as is_previous_recovered
    from context
),

repairs as (
    -- pass 2: the latest repair point (two recovered sessions running) before this session
    select
        *,
        is_recovered and is_previous_recovered as is_repair_point,
        max(case when is_recovered and is_previous_recovered then session_number end) over (
            partition by series_key
            order by session_number
            rows between unbounded preceding and 1 preceding
        ) as previous_repair_session
    from recovered
),

marked as (
    select
        *,
        -- opens an episode: no earlier flag, or a repair since the latest one
        is_flag
        and (
            previous_flag_session is null
            or coalesce(previous_repair_session > previous_flag_session, false)
        ) as is_opening,
        -- the episode's earlier flags are those after the latest repair point
        coalesce(previous_repair_session, 0) as episode_floor,
        -- no repair since the latest flag: an episode is open
        last_flag_session is not null
        and coalesce(
            greatest(
                previous_repair_session,
                case when is_recovered and is_previous_recovered then session_number end
            ) < last_flag_session,
            true
        ) as is_open
    from repairs
),

kept as (
    -- only the sessions episodes are made of: flags, ongoing sessions and repair points
    select
        *,
        not is_flag and is_open and not is_recovered as is_ongoing
    from marked
    where is_flag or is_repair_point or (is_open and not is_recovered)
),

placed as (
    -- pass 3, over the kept sessions only: the episode opened most recently, and the latest
    -- earlier flag of at least medium / high severity (for escalation)
    select
        *,
        max(case when is_opening then session_number end) over w_upto as opened_session,
        max(case when severity_rank >= 2 then session_number end) over w_before
            as previous_medium_session,
        max(case when severity_rank >= 3 then session_number end) over w_before
            as previous_high_session
    from kept
    window
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

escalated as (
    select
        *,
        -- raises the episode's severity: no earlier flag of the episode (after its latest repair
        -- point) was as severe
        is_flag
        and not is_opening
        and (
            (severity_rank = 2 and coalesce(previous_medium_session, 0) <= episode_floor)
            or (severity_rank = 3 and coalesce(previous_high_session, 0) <= episode_floor)
        ) as is_escalation
    from placed
)

select
    series_key,
    session_number,
    session_date,
    severity_rank,
    is_flag,
    is_opening,
    is_escalation,
    is_ongoing,
    -- under an alert budget, and in a week the alert ceiling raised the threshold, every flag
    -- row is one whose evidence passed the clinic's threshold: sessions still below baseline
    -- keep the episode open but are no flag rows
    is_flag or (is_ongoing and alert_budget is null and not is_clinic_threshold) as is_flagged,
    is_disengagement,
    is_repair_point,
    opened_session
from escalated
