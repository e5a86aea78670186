-- Alliance versus outcome per clinic, alliance instrument and symptom instrument: early
-- alliance (mean total over sessions 1-3, for clients measured at each of them) against
-- pre-post symptom change (latest minus first measure, signed so that positive = improved,
-- for clients measured at 3 or more sessions). r with a 95% confidence interval (Fisher z) and
-- n. Every pairing of an alliance and a symptom instrument a clinic measures has a row, n = 0
-- included. Small cells: with n < 10 clients the correlation is not shown (r and its interval
-- are null, suppressed is true). r is null too when either measure does not vary (no
-- correlation is defined, e.g. every client at the SRS ceiling). A client's treatment episodes
-- (episode_id) are counted apart: each is its own course of sessions.
-- Published reference: the alliance-outcome correlation is about r = .28 (Fluckiger et al.
-- 2018, Psychotherapy 55(4), meta-analysis of 295 studies).
create or replace view alliance_outcome as
with early_alliance as (
    select
        m.clinic_id,
        m.client_id,
        m.episode_id,
        m.instrument as alliance_instrument,
        avg(m.total) as early_alliance,
        count(*) as early_sessions
    from measurements as m
    inner join instruments as i on m.instrument = i.instrument
    where i.construct = 'alliance' and m.session_number <= 3
    group by m.clinic_id, m.client_id, m.episode_id, m.instrument
),

symptom_change as (
    select
        m.clinic_id,
        m.client_id,
        m.episode_id,
        m.instrument as outcome_instrument,
        count(*) as outcome_sessions,
        case max(i.direction)
            when 'higher_worse' then arg_min(m.total, m.session_number)
                - arg_max(m.total, m.session_number)
            else arg_max(m.total, m.session_number) - arg_min(m.total, m.session_number)
        end as improvement
    from measurements as m
    inner join instruments as i on m.instrument = i.instrument
    where i.construct = 'symptoms'
    group by m.clinic_id, m.client_id, m.episode_id, m.instrument
),

paired as (
    select a.*, s.outcome_instrument, s.improvement
    from early_alliance as a
    inner join symptom_change as s
        on a.clinic_id = s.clinic_id
        and a.client_id = s.client_id
        and a.episode_id = s.episode_id
    where a.early_sessions >= 3 and s.outcome_sessions >= 3
),

cells as (
    -- every pairing the clinic measures, so that a cell with no eligible client shows n = 0
    -- (distinct on each side first: joined client by client it grows with clients squared)
    select a.clinic_id, a.alliance_instrument, s.outcome_instrument
    from (select distinct clinic_id, alliance_instrument from early_alliance) as a
    inner join (select distinct clinic_id, outcome_instrument from symptom_change) as s
        on a.clinic_id = s.clinic_id
),

correlated as (
    select
        c.clinic_id,
        c.alliance_instrument,
        c.outcome_instrument,
        count(p.client_id) as n,
        -- corr() is NaN when a measure does not vary: no correlation is defined
        nullif(corr(p.early_alliance, p.improvement), 'nan'::double) as r_raw
    from cells as c
    left join paired as p
        on c.clinic_id = p.clinic_id
        and c.alliance_instrument = p.alliance_instrument
        and c.outcome_instrument = p.outcome_instrument
    group by c.clinic_id, c.alliance_instrument, c.outcome_instrument
),

with_interval as (
    select
        *,
        -- greatest() and least() skip a null: an undefined r must stay null
        case when r_raw is not null then atanh(least(greatest(r_raw, -0.999999), 0.999999)) end as z,
        1.0 / sqrt(greatest(n - 3, 1)) as se
    from correlated
)

select
    clinic_id,
    alliance_instrument,
    outcome_instrument,
    n,
    case when n >= 10 then round(r_raw, 3) end as r,
    case when n >= 10 then round(tanh(z - 1.959964 * se), 3) end as r_low,
    case when n >= 10 then round(tanh(z + 1.959964 * se), 3) end as r_high,
    n < 10 as suppressed,
    0.28::double as published_r
from with_interval
