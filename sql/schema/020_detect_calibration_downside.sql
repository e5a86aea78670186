-- The clinic's downside scale of the total (docs/detection.md, "Self-calibration"): the pooled
-- variance of the residuals below the prediction only, the target toward which a client's
-- downside variance is shrunk. Stored with the rest of the calibration so that incremental
-- detection sees when late or corrected data moves it. Rows written before this migration have
-- none (a recompute fills them).
alter table detect_calibration add column pooled_var_total_down double;
