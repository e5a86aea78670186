-- The rows of `flags` (CONTRACT): one per flagged alliance session, with severity, reason codes,
-- its alert episode, whether it is the episode's first session (`is_new`), what kind of alert it
-- is (`alert_kind`: opened, escalated or ongoing) and the evidence numbers a digest shows. The
-- names (clinic, client, clinician, instrument) are joined back from the measurements here, for
-- the flagged sessions only.
with episodes as (
    select
        series_key,
        session_number,
        opened_session,
        severity_rank,
        is_flag,
        is_disengagement,
        is_opening,
        is_escalation,
        is_ongoing
    from detect_episode_sessions
    where is_flagged
),

names as (
    select
        e.series_key,
        e.session_number,
        m.clinic_id,
        m.client_id,
        coalesce(m.episode_id, '') as episode_id,
        m.clinician_id,
        m.session_date,
        m.instrument
    from detect_scope_measurements as m
    inner join episodes as e
        on hash(m.clinic_id, m.client_id, coalesce(m.episode_id, ''), m.instrument) = e.series_key
        and m.session_number = e.session_number
    -- alliance measures only: the key is hashed for the rows left
    where m.instrument in (select distinct instrument from detect_params)
),

signals as (
    select
        s.*,
        e.opened_session,
        e.severity_rank,
        e.is_flag,
        e.is_disengagement,
        e.is_opening,
        e.is_escalation,
        e.is_ongoing
    from detect_flagged_signals as s
    inner join episodes as e
        on s.series_key = e.series_key
        and s.session_number = e.session_number
),

recent as (
    -- sustained decline is a reason, never the flag decision: its slope (least squares, per
    -- session) over the last decline_sessions sessions is fitted for the flagged sessions only.
    -- Sums in exact decimals (scores to 6 places): a float sum depends on the order rows arrive
    -- in, and an incremental run must give the same digits as a full one.
    select
        s.series_key,
        s.session_number,
        count(f.total) as n,
        sum(f.session_number) filter (where f.total is not null) as sx,
        -- bigint: a session number past 46,340 squared overflows an integer
        sum(f.session_number::bigint * f.session_number) filter (where f.total is not null) as sxx,
        sum(f.total::decimal(18, 6)) as sy,
        sum(f.session_number * f.total::decimal(18, 6)) as sxy
    from signals as s
    inner join detect_alliance_features as f
        on s.series_key = f.series_key
        and f.n_prior between s.n_prior - (s.decline_sessions - 1) and s.n_prior
    group by s.series_key, s.session_number
),

declined as (
    select
        s.*,
        r.decline_slope,
        coalesce(
            s.n_prior >= s.decline_sessions - 1
            and -r.decline_slope * (s.decline_sessions - 1) >= s.decline_min_drop,
            false
        )
        -- or the CUSUM of the standardized drops crossed its decision interval, or the mean
        -- of the last two sessions fell below the level before them
        or s.is_cusum
        or s.is_pair_drop as is_sustained_decline
    from signals as s
    inner join (
        select
            series_key,
            session_number,
            (n * sxy - sx * sy)::double / nullif(n * sxx - sx * sx, 0)::double as decline_slope
        from recent
    ) as r
        on s.series_key = r.series_key
        and s.session_number = r.session_number
),

flag_rows as (
    select
        n.clinic_id,
        n.client_id,
        n.episode_id,
        n.clinician_id,
        n.session_number,
        n.session_date,
        n.instrument,
        case
            when s.is_ongoing then 'low'
            when s.severity_rank = 3 then 'high'
            when s.severity_rank = 2 then 'medium'
            else 'low'
        end as severity,
        list_filter(
            [
                case when s.is_below_cutoff then 'below_cutoff' end,
                case when s.is_reliable_drop_previous then 'reliable_drop_previous' end,
                case when s.is_reliable_drop_baseline then 'reliable_drop_baseline' end,
                case when s.is_deflection then 'deflection' end,
                case when s.is_sustained_decline then 'sustained_decline' end,
                case when s.is_bond_drop then 'bond_drop' end,
                case when s.is_goal_task_drop then 'goal_task_drop' end,
                case when s.is_calibrated_drop then 'calibrated_drop' end,
                case when s.is_disengagement then 'disengagement' end,
                case when s.is_symptom_deterioration then 'symptom_deterioration' end,
                case when s.is_ongoing then 'still_below_baseline' end
            ],
            x -> x is not null
        ) as reasons,
        -- a treatment episode other than the one '' is named in the id (concat_ws skips null);
        -- a ':' inside an id is written %3A (and '%' %25), so that client 'a' of treatment
        -- episode 'b' and client 'a:b' never share an id (aw_id_part, pipelines/detect/ids.py)
        concat_ws(
            ':',
            aw_id_part(n.clinic_id),
            aw_id_part(n.client_id),
            aw_id_part(nullif(n.episode_id, '')),
            n.instrument,
            s.opened_session::varchar
        ) as alert_episode_id,
        -- CONTRACT: the first session of its episode, and nothing else
        s.is_opening as is_new,
        case
            when s.is_opening then 'opened'
            when s.is_escalation then 'escalated'
            else 'ongoing'
        end as alert_kind,
        s.total,
        s.previous_total,
        s.baseline_total,
        s.delta_previous,
        s.delta_baseline,
        s.reliable_change,
        s.cutoff,
        s.fallen_part,
        json_object(
            'n_prior_sessions', s.n_prior,
            'flag_score', s.flag_score,
            'flag_evidence', s.flag_evidence,
            'flag_threshold', s.flag_threshold,
            'cusum', s.cusum,
            'clinic_sd', s.clinic_sd,
            'prior_df', s.prior_df_total,
            'n_calibration_sessions', s.n_calibration_sessions,
            'z_total', s.z_total,
            'z_bond', s.z_bond_contrast,
            'z_goal_task', s.z_goal_task_contrast,
            'baseline_sd', s.baseline_sd,
            'deflection_scale', s.deflection_scale,
            'deflection_sd', s.deflection_sd,
            'decline_slope', s.decline_slope,
            'decline_sessions', s.decline_sessions,
            'bond_score', s.bond_score,
            'baseline_bond', s.baseline_bond,
            'delta_bond', s.delta_bond,
            'goal_task_score', s.goal_task_score,
            'baseline_goal_task', s.baseline_goal_task,
            'delta_goal_task', s.delta_goal_task,
            'n_missed_since_previous', s.n_missed_since_previous,
            'deteriorated_instruments', s.deteriorated_instruments
        ) as evidence,
        -- not written to `flags`: what alert_episodes aggregates
        s.series_key,
        s.is_flag,
        s.severity_rank
    from declined as s
    inner join names as n
        on s.series_key = n.series_key
        and s.session_number = n.session_number
)

select * from flag_rows
