-- The deployed comparison rules, per alliance session, for the evaluation (not for alerts):
--   cutoff only: total below the instrument's cutoff (PCOMS/OpenFIT);
--   cutoff or any 1-point drop from the previous session (PCOMS/OpenFIT);
--   a 2-SD deflection below the client's own mean (Stiles et al. 2004), with mean and SD taken
--   over the earlier sessions only (no look-ahead) and at least two of them, no floor.
with features as (
    select * from detect_alliance_features
),

params as (
    select * from detect_params
),

rules as (
    select
        f.clinic_id,
        f.client_id,
        f.instrument,
        f.session_number,
        f.total < f.cutoff as is_rule_cutoff,
        f.total < f.cutoff
        or coalesce(f.previous_total - f.total >= p.one_point - 1e-9, false) as is_rule_cutoff_or_drop,
        coalesce(
            f.n_prior >= 2
            and f.baseline_sd > 0
            and f.baseline_total - f.total >= 2 * f.baseline_sd,
            false
        ) as is_rule_deflection_2sd
    from features as f
    inner join params as p
        on f.clinic_id = p.clinic_id
        and f.instrument = p.instrument
)

select * from rules
