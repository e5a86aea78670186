-- Per alliance session, what was known up to and including that session: the previous score,
-- the client's own running baseline (mean and SD of every earlier session), part baselines and
-- SDs, missed appointments since the previous session, and what the clinic's calibration
-- (clinic_calibration) pools: each session's one-step prediction residual against the client's
-- own baseline, and the week the session falls in. One window pass over the series; every frame
-- ends at the current row and every appointment counted is dated before the session (no
-- look-ahead).
with misses as (
    -- each client's cancellations and no-shows, as one list of dates
    select
        hash(clinic_id, client_id) as client_key,
        list(appointment_date) as miss_dates
    from detect_scope_appointments
    where status in ('cancelled', 'no_show')
    group by all
),

series as (
    -- the client's misses dated before each session (a miss on a session's date counts toward
    -- the next one); the misses since the previous session are the difference from that
    -- session's count. Counted in the client's list of miss dates (a client has a few): a
    -- window pass over a time line of every session and miss sorted all the session's columns
    -- and cost ~2 CPU s more at 10M rows, the same counts
    select
        s.*,
        coalesce(len(list_filter(m.miss_dates, d -> d < s.session_date)), 0) as misses_before
    from detect_alliance_series as s
    left join misses as m
        on s.client_key = m.client_key
),

windowed as (
    select
        series_key,
        client_key,
        param_key,
        session_number,
        session_date,
        total,
        bond_score,
        goal_task_score,
        -- earlier sessions (a row number is cheaper than a windowed count)
        row_number() over w_series - 1 as n_prior,
        lag(total) over w_series as previous_total,
        -- equal to session_number only if two series share a key (measurements are unique per
        -- clinic, client, session and instrument): detect.py refuses to go on
        lag(session_number) over w_series as previous_session_number,
        -- misses since the previous session, up to (not including) this one; none counted
        -- before a first session
        coalesce(misses_before - lag(misses_before) over w_series, 0) as n_missed_since_previous,
        avg(total) over w_prior as baseline_total,
        stddev_samp(total) over w_prior as baseline_sd,
        avg(bond_score) over w_prior as baseline_bond,
        avg(goal_task_score) over w_prior as baseline_goal_task,
        bond_contrast,
        goal_task_contrast,
        avg(bond_contrast) over w_prior as baseline_bond_contrast,
        avg(goal_task_contrast) over w_prior as baseline_goal_task_contrast,
        stddev_samp(bond_contrast) over w_prior as baseline_bond_contrast_sd,
        stddev_samp(goal_task_contrast) over w_prior as baseline_goal_task_contrast_sd
    from series
    window
        w_series as (
            partition by series_key
            order by session_number
        ),
        w_prior as (
            partition by series_key
            order by session_number
            rows between unbounded preceding and 1 preceding
        )
),

features as (
    select
        w.series_key,
        w.client_key,
        w.param_key,
        w.session_number,
        w.previous_session_number,
        w.session_date,
        w.total,
        w.bond_score,
        w.goal_task_score,
        w.n_prior,
        w.previous_total,
        w.baseline_total,
        w.baseline_sd,
        w.baseline_bond,
        w.baseline_goal_task,
        w.bond_contrast,
        w.goal_task_contrast,
        w.baseline_bond_contrast,
        w.baseline_goal_task_contrast,
        w.baseline_bond_contrast_sd,
        w.baseline_goal_task_contrast_sd,
        w.n_missed_since_previous,
        -- the calibration period: a session is judged with what the clinic's sessions of
        -- earlier weeks show
        date_trunc('week', w.session_date)::date as week_start,
        -- squared one-step prediction residuals, scaled so that their expectation is the
        -- client's within-client variance: (x - mean of n earlier) ^ 2 * n / (n + 1)
        (w.total - w.baseline_total) ^ 2 * w.n_prior / (w.n_prior + 1) as u_total,
        (w.bond_contrast - w.baseline_bond_contrast) ^ 2 * w.n_prior / (w.n_prior + 1)
            as u_bond_contrast,
        (w.goal_task_contrast - w.baseline_goal_task_contrast) ^ 2 * w.n_prior / (w.n_prior + 1)
            as u_goal_task_contrast,
        -- the session fell below the prediction: its residual counts in the clinic's downside
        -- variance (clinic_calibration)
        (coalesce(w.total < w.baseline_total, false))::integer as is_down
    from windowed as w
)

select * from features
