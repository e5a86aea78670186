-- Treatment episodes and rows not taken in (issue #17).
-- episode_id: the clinic's treatment-episode code, '' when the export has none. It is part of
-- the measurement key (clinic, client, episode, session, instrument): a client's second episode
-- restarts its session numbers and is a new series, not a correction of the first. Rows loaded
-- before this migration belong to the one episode ''.
-- rows_filtered: delivered lines the clinic's config says are not measures (blank spreadsheet
-- rows; rows a `keep_rows` condition excludes: collateral raters, survey previews, unfinished
-- responses, REDCap forms not complete), counted by reason in filtered_reasons. They are outside
-- rows_in, so rows_in = rows_loaded + rows_quarantined + rows_duplicate still holds; the lines
-- of a file are rows_in + rows_filtered (wide files: entries, one per instrument block).
alter table measurements add column episode_id varchar default '';
alter table measurements_superseded add column episode_id varchar default '';
alter table ingest_files add column rows_filtered bigint default 0;
alter table ingest_files add column filtered_reasons varchar[];
