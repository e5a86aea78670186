-- Treatment episodes and rows not taken in (issue #17).
-- (The DuckLake counterpart of sql/schema/017_episodes_and_filtered_rows.sql: no defaults; the
-- loader writes every column.)
alter table measurements add column episode_id varchar;
alter table measurements_superseded add column episode_id varchar;
alter table ingest_files add column rows_filtered bigint;
alter table ingest_files add column filtered_reasons varchar[];
-- rows of the lake loaded before: the one episode '' (no default fills them here)
update measurements set episode_id = '' where episode_id is null;
update measurements_superseded set episode_id = '' where episode_id is null;
update ingest_files set rows_filtered = 0 where rows_filtered is null;
