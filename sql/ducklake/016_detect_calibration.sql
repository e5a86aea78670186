-- Each clinic's detection calibration per alliance instrument and week.
-- (The DuckLake counterpart of sql/schema/016_detect_calibration.sql: no key.)
create table detect_calibration (
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
    budget_threshold        double
);
