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

names as (
    select
        hash(clinic_id, client_id, coalesce(episode_id, ''), instrument) as series_key,
        clinic_id,
        client_id,
        instrument,
        session_number
    from detect_scope_measurements
),

rules as (
    select
        n.clinic_id,
        n.client_id,
        n.instrument,
        f.session_number,
        f.total < p.cutoff as is_rule_cutoff,
        f.total < p.cutoff
        or coalesce(f.previous_total - f.total >= p.one_point - 1e-9, false) as is_rule_cutoff_or_drop,
        coalesce(
            f.n_prior >= 2
            and f.baseline_sd > 0
            and f.baseline_total - f.total >= 2 * f.baseline_sd,
            false
        ) as is_rule_deflection_2sd
    from features as f
    inner join params as p
        on f.param_key = p.param_key
    inner join names as n
        on f.series_key = n.series_key
        and f.session_number = n.session_number
)

select * from rules
