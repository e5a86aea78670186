-- Per clinic and week of receipt (Monday, in the clinic's own timezone, as the data team's
-- weekly summary counts them): files received, rejected and duplicated, rows received, loaded,
-- quarantined and duplicated, rows filtered (not measures by the clinic's config: blank
-- spreadsheet rows, keep_rows such as collateral raters or survey previews; outside rows
-- received, never loaded, counted by reason in ingest_files.filtered_reasons), and whether the clinic's feed is stale now (no file received for
-- more than the clinic's cadence_days, as the freshness notice judges it). A clinic's timezone
-- and cadence come from clinic_settings (written by every ingest); without a row there, UTC
-- and 7 days (the config's default). Weeks without any file do not appear. An attempt whose
-- content was not judged and that was tried again (ingest_attempts.retried) counts as no
-- file: it is in attempts_retried only.
create or replace view clinic_data_quality_weekly as
with settings as (
    -- one row per clinic, the latest (two first writers on DuckLake may both have inserted)
    select clinic_id, timezone, cadence_days
    from clinic_settings
    qualify row_number() over (partition by clinic_id order by updated_at desc) = 1
),

files as (
    select
        a.clinic_id,
        cast(
            date_trunc('week', timezone(coalesce(s.timezone, 'UTC'), a.received_at)) as date
        ) as week_start,
        a.status,
        a.retried,
        a.rows_in,
        a.rows_loaded,
        a.rows_quarantined,
        a.rows_duplicate,
        coalesce(a.rows_filtered, 0) as rows_filtered
    from ingest_attempts as a
    left join settings as s on a.clinic_id = s.clinic_id
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
        sum(rows_duplicate) as rows_duplicate,
        sum(rows_filtered) as rows_filtered
    from files
    group by clinic_id, week_start
),

latest as (
    select
        f.clinic_id,
        max(f.received_at) as last_received_at,
        coalesce(any_value(s.cadence_days), 7) as cadence_days
    from ingest_files as f
    left join settings as s on f.clinic_id = s.clinic_id
    group by f.clinic_id
)

select
    w.*,
    round(w.rows_quarantined / nullif(w.rows_received, 0), 4) as quarantined_share,
    l.last_received_at,
    l.cadence_days,
    l.last_received_at < now() - to_days(l.cadence_days) as feed_stale
from weekly as w
inner join latest as l on w.clinic_id = l.clinic_id
