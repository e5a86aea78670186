-- Per alliance session, what was known up to and including that session: the previous score,
-- the client's own running baseline (mean and SD of every earlier session), part baselines and
-- SDs, missed appointments since the previous session, and what the clinic's calibration
-- (clinic_calibration) pools: each session's one-step prediction residual against the client's
-- own baseline, and the week the session falls in. Two window passes over narrow rows (the
-- client's time line of sessions and misses, then the series); every frame ends at the current
-- row and every appointment counted is dated before the session (no look-ahead).
with misses as (
    -- cancellations and no-shows initiated by the client
    select
        hash(clinic_id, client_id) as client_key,
        appointment_date
    from detect_scope_appointments
    where status in ('cancelled', 'no_show')
),

events as (
    -- every session and every miss of a client on one time line: a miss on a session's date
    -- sorts after the session (it counts toward the next one)
    select
        s.*,
        0 as is_miss
    from detect_alliance_series as s
    union all by name
    select
        m.client_key,
        m.appointment_date as session_date,
        1 as is_miss
    from misses as m
),

series as (
    -- the client's misses dated before each session: the misses since the previous session
    -- are the difference from that session's count (one window pass over narrow rows, cheaper
    -- at scale than a range join of every session with every miss of its client)
    select
        * exclude (is_miss),
        sum(is_miss) over (
            partition by client_key
            order by session_date, is_miss
            rows between unbounded preceding and current row
        ) as misses_before
    from events
    qualify is_miss = 0
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
