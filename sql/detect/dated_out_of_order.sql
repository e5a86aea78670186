-- Alliance sessions whose date runs backwards against their session number: a session dated
-- after a higher-numbered session of the same series (clinic, client, treatment episode,
-- instrument), e.g. a REDCap repeat instance entered late, or a typo in a date. The windows order
-- a series by session number while the calibration pools by calendar week, so such a session
-- would rest on sessions dated after it (a look-ahead). Detection leaves these sessions out
-- (alliance_series anti-joins this relation) and `detect_excluded_sessions` records each one
-- with its reason for the clinic's data team.
--
-- The rule keeps a session iff its date is not later than the date of any higher-numbered
-- session of its series. Whether a session is kept depends only on sessions dated before it
-- (those that can be dated earlier than it), so truncating the data at a date never changes
-- whether a session that survives the truncation is kept: no look-ahead. The sessions kept are in
-- date order. (Leaving out the later-numbered, earlier-dated session instead would depend on
-- sessions dated after it.) Equal dates are in order (same-day sessions).
with measures as (
    select
        m.clinic_id,
        m.client_id,
        coalesce(m.episode_id, '') as episode_id,
        m.instrument,
        m.session_number,
        m.session_date,
        m.source_file,
        m.source_line
    from detect_scope_measurements as m
    -- alliance measures only, as alliance_series reads them
    semi join detect_params as p
        on m.clinic_id = p.clinic_id
        and m.instrument = p.instrument
),

keyed as (
    -- integer keys only through the window: the series key alliance_series computes
    select
        hash(clinic_id, client_id, episode_id, instrument) as series_key,
        session_number,
        session_date
    from measures
),

later as (
    select
        series_key,
        session_number,
        session_date,
        -- the earliest date of the higher-numbered sessions (a range frame: a session number
        -- delivered twice is not "higher", and the key check of detect.py still sees both)
        min(session_date) over (
            partition by series_key
            order by session_number
            range between 1 following and unbounded following
        ) as later_date
    from keyed
),

out_of_order as (
    select *
    from later
    where session_date > later_date
),

blocking as (
    -- the first higher-numbered session dated at that earliest date, to name in the reason
    select
        o.series_key,
        o.session_number,
        min(k.session_number) as later_session_number
    from out_of_order as o
    inner join keyed as k
        on o.series_key = k.series_key
        and k.session_number > o.session_number
        and k.session_date = o.later_date
    group by all
)

select
    o.series_key,
    m.clinic_id,
    m.client_id,
    m.episode_id,
    m.instrument,
    m.session_number,
    m.session_date,
    b.later_session_number,
    o.later_date as later_session_date,
    m.source_file,
    m.source_line,
    'session_dated_after_later_session: ' || m.instrument || ' session ' || m.session_number
    || ' (' || strftime(m.session_date, '%Y-%m-%d') || ') is dated after session '
    || b.later_session_number || ' (' || strftime(o.later_date, '%Y-%m-%d')
    || ') of the same series; detection leaves it out until the dates or numbers are corrected'
        as reason
from out_of_order as o
inner join blocking as b
    on o.series_key = b.series_key
    and o.session_number = b.session_number
inner join measures as m
    on hash(m.clinic_id, m.client_id, m.episode_id, m.instrument) = o.series_key
    and m.session_number = o.session_number
