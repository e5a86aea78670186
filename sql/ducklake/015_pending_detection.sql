-- Pending detection: the clients whose flags may be out of date, queued by each load in its
-- own transaction and drained by detection (pipelines/pending.py).
-- (The DuckLake counterpart of sql/schema/015_pending_detection.sql: no default.)
create table detection_pending (
    clinic_id          varchar     not null,
    client_id          varchar     not null,
    load_id            bigint      not null,
    queued_at          timestamptz not null
);
