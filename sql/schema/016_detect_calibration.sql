-- Each clinic's detection calibration, per alliance instrument and calendar week, as the last
-- detection computed it (sql/detect/clinic_calibration.sql, alert_thresholds.sql): the pooled
-- within-client variances and prior weights that set the scale of "a drop", and the alert-budget
-- threshold where the clinic set a budget. Each week's values use only earlier weeks' sessions.
-- Analysts audit the alerts with it; incremental detection compares against it to find the
-- clients whose flags a changed calibration (late or corrected data) moves.
create table if not exists detect_calibration (
    clinic_id               varchar not null,
    instrument              varchar not null,
    week_start              date not null,
    n_calibration_sessions  bigint not null,
    pooled_var_total        double,
    pooled_var_bond         double,
    pooled_var_goal_task    double,
    prior_df_total          double,
    prior_df_bond           double,
    prior_df_goal_task      double,
    budget_threshold        double,
    primary key (clinic_id, instrument, week_start)
);
