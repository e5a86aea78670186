-- Every version ever loaded: the current rows (superseded_at null) and those a correction
-- replaced (superseded_at set). Nothing is ever deleted from either except by erasure.
create or replace view measurements_history as
with current_versions as (
    select
        clinic_id, client_id, episode_id, clinician_id, session_number, session_date, instrument,
        instrument_version, item_1, item_2, item_3, item_4, item_5, item_6, item_7, item_8,
        item_9, item_10, item_11, item_12, total, source_file, source_line, sha256, load_id,
        loaded_at, cast(null as timestamptz) as superseded_at
    from measurements
),
superseded_versions as (
    select
        clinic_id, client_id, episode_id, clinician_id, session_number, session_date, instrument,
        instrument_version, item_1, item_2, item_3, item_4, item_5, item_6, item_7, item_8,
        item_9, item_10, item_11, item_12, total, source_file, source_line, sha256, load_id,
        loaded_at, superseded_at
    from measurements_superseded
)
select * from current_versions
union all
select * from superseded_versions
