-- The clinic config a file was judged under. A file rejected at file level is offered again
-- once its clinic's config changes (e.g. the delimiter was wrong in the config, not the file).
alter table ingest_files add column if not exists config_sha varchar;
