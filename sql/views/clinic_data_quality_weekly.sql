-- Per clinic and ISO week (Monday) of receipt: files received, rejected and duplicated, rows
-- received, loaded, quarantined and duplicated, and whether the clinic's feed is stale now
-- (no file received for more than 14 days). Weeks without any file do not appear. An attempt
-- whose content was not judged and that was tried again (ingest_attempts.retried) counts as
-- no file: it is in attempts_retried only.
create or replace view clinic_data_quality_weekly as
with files as (
    select
        clinic_id,
        cast(date_trunc('week', received_at) as date) as week_start,
        status,
        retried,
        rows_in,
        rows_loaded,
        rows_quarantined,
        rows_duplicate
    from ingest_attempts
),

weekly as (
    select
        clinic_id,
        week_start,
        count(*) filter (where not retried) as files_received,
        count(*) filter (where status = 'rejected' and not retried) as files_rejected,
        count(*) filter (where status = 'duplicate') as files_duplicate,
        count(*) filter (where retried) as attempts_retried,
        sum(rows_in) as rows_received,
        sum(rows_loaded) as rows_loaded,
        sum(rows_quarantined) as rows_quarantined,
        sum(rows_duplicate) as rows_duplicate
    from files
    group by clinic_id, week_start
),

latest as (
    select clinic_id, max(received_at) as last_received_at
    from ingest_files
    group by clinic_id
)

select
    w.*,
    round(w.rows_quarantined / nullif(w.rows_received, 0), 4) as quarantined_share,
    l.last_received_at,
    l.last_received_at < now() - interval 14 days as feed_stale
from weekly as w
inner join latest as l on w.clinic_id = l.clinic_id
