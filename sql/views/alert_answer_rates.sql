-- Clinicians' answers summed up per clinic (grain 'clinic', clinician_id '') and per clinician
-- (grain 'clinician'), from `alert_outcomes`: answer rate, clinician-confirmed precision (the two
-- "a rupture" answers over all answers) with its 95% Wilson score interval, and the share of
-- episodes back at baseline within two sessions after a repair conversation versus after a
-- confirmed rupture not talked about yet. Small cells: a rate whose denominator is under 10 is
-- null and is_suppressed is true (the counts stay, for analysts inside the warehouse).
create or replace view alert_answer_rates as
with counts as (
    -- one row per clinic (its clinicians rolled up) and one per clinician
    select
        case when grouping(clinician_id) = 1 then 'clinic' else 'clinician' end as grain,
        clinic_id,
        case when grouping(clinician_id) = 1 then '' else clinician_id end as clinician_id,
        count(*) as n_alerts,
        count(*) filter (where is_answered) as n_answered,
        count(*) filter (where is_rupture_confirmed) as n_rupture,
        count(*) filter (where is_conversation_held) as n_talked,
        count(*) filter (where is_conversation_held and is_recovered) as n_talked_recovered,
        count(*) filter (where answer = 'rupture_not_yet') as n_not_talked,
        count(*) filter (where answer = 'rupture_not_yet' and is_recovered)
            as n_not_talked_recovered
    from alert_outcomes
    group by grouping sets ((clinic_id), (clinic_id, clinician_id))
),

wilson as (
    -- z: the normal quantile of 0.975; p = n_rupture / n_answered
    select
        *,
        1.959963984540054 as z,
        n_rupture / nullif(n_answered, 0) as p,
        1.959963984540054 ^ 2 / nullif(n_answered, 0) as z2n
    from counts
),

rates as (
    select
        grain,
        clinic_id,
        clinician_id,
        n_alerts,
        n_answered,
        n_rupture,
        n_talked,
        n_not_talked,
        n_answered < 10 as is_suppressed,
        case when n_alerts >= 10 then n_answered / n_alerts end as answer_rate,
        case when n_answered >= 10 then p end as confirmed_precision,
        case when n_answered >= 10 then
            (p + z2n / 2 - z * sqrt(p * (1 - p) / n_answered + z2n / (4 * n_answered)))
            / (1 + z2n)
        end as precision_low,
        case when n_answered >= 10 then
            (p + z2n / 2 + z * sqrt(p * (1 - p) / n_answered + z2n / (4 * n_answered)))
            / (1 + z2n)
        end as precision_high,
        case when n_talked >= 10 then n_talked_recovered / n_talked end
            as recovered_after_talk,
        case when n_not_talked >= 10 then n_not_talked_recovered / n_not_talked end
            as recovered_without_talk
    from wilson
)

select * from rates
order by clinic_id, grain, clinician_id
