-- The rows of `detect_excluded_sessions`: each alliance session detection leaves out
-- (dated_out_of_order.sql) with its names, where it was delivered, the higher-numbered session
-- dated before it (the first such at the earliest such date) and the reason the clinic's data
-- team reads. Run only when there are such sessions: it reads the measurements again.
with excluded as (
    select * from detect_dated_out_of_order
),

measures as (
    -- the sessions of the series in question
    select *
    from (
        select
            hash(clinic_id, client_id, coalesce(episode_id, ''), instrument) as series_key,
            clinic_id,
            client_id,
            coalesce(episode_id, '') as episode_id,
            instrument,
            session_number,
            session_date,
            source_file,
            source_line
        from detect_scope_measurements
    )
    where series_key in (select series_key from excluded)
),

blocking as (
    select
        e.series_key,
        e.session_number,
        min(m.session_number) as later_session_number
    from excluded as e
    inner join measures as m
        on e.series_key = m.series_key
        and m.session_number > e.session_number
        and m.session_date = e.later_date
    group by all
)

select
    m.clinic_id,
    m.client_id,
    m.episode_id,
    m.instrument,
    m.session_number,
    m.session_date,
    b.later_session_number,
    e.later_date as later_session_date,
    m.source_file,
    m.source_line,
    'session_dated_after_later_session: ' || m.instrument || ' session ' || m.session_number
    || ' (' || strftime(m.session_date, '%Y-%m-%d') || ') is dated after session '
    || b.later_session_number || ' (' || strftime(e.later_date, '%Y-%m-%d')
    || ') of the same series; detection leaves it out until the dates or numbers are corrected'
        as reason
from excluded as e
inner join blocking as b
    on e.series_key = b.series_key
    and e.session_number = b.session_number
inner join measures as m
    on e.series_key = m.series_key
    and e.session_number = m.session_number
