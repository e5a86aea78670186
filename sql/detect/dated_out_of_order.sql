-- Alliance sessions whose date runs backwards against their session number: a session dated
-- after a higher-numbered session of the same series (clinic, client, treatment episode,
-- instrument), e.g. a REDCap repeat instance entered late, or a typo in a date. The windows order
-- a series by session number while the calibration pools by calendar week, so such a session
-- would rest on sessions dated after it (a look-ahead). Detection leaves these sessions out
-- (alliance_series anti-joins this relation); excluded_sessions.sql names them for the warehouse
-- table `detect_excluded_sessions`, which the clinic's data team reads. The ingest receipt
-- counts the same sessions at load time with this rule on the warehouse's names
-- (pipelines/ingest/run.py, sessions_dated_out_of_order): a change of the rule changes both.
--
-- The rule keeps a session iff its date is not later than the date of any higher-numbered
-- session of its series. Whether a session is kept depends only on sessions dated before it
-- (those that can be dated earlier than it), so truncating the data at a date never changes
-- whether a session that survives the truncation is kept: no look-ahead. The sessions kept are in
-- date order. (Leaving out the later-numbered, earlier-dated session instead would depend on
-- sessions dated after it.) Equal dates are in order (same-day sessions).
with keyed as (
    -- integer keys only through the windows: the series key alliance_series computes; alliance
    -- measures only (every clinic in scope has detect_params rows for each)
    select
        hash(clinic_id, client_id, coalesce(episode_id, ''), instrument) as series_key,
        session_number,
        session_date
    from detect_scope_measurements
    where instrument in (select distinct instrument from detect_params)
),

descending as (
    -- the series with a session dated after the next one: a series with a session dated after
    -- any higher-numbered one has such a neighbour somewhere between the two. A lead over every
    -- session is the one pass over all of them (~0.9 CPU s at 10M rows); the frame of every
    -- later session (below) runs over these few series only
    select distinct series_key
    from (
        select
            series_key,
            session_date > lead(session_date) over (
                partition by series_key
                order by session_number
            ) as descends
        from keyed
    )
    where descends
),

later as (
    select
        k.series_key,
        k.session_number,
        k.session_date,
        -- the earliest date of the higher-numbered sessions (a range frame: a session number
        -- delivered twice is not "higher", and detect.py's key check still sees both)
        min(k.session_date) over (
            partition by k.series_key
            order by k.session_number
            range between 1 following and unbounded following
        ) as later_date
    from keyed as k
    semi join descending as d
        on k.series_key = d.series_key
)

select
    series_key,
    session_number,
    session_date,
    later_date
from later
where session_date > later_date
