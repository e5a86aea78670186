-- Pending detection: the clients whose flags may be out of date. Every load that touches a
-- client queues it here in the same transaction as its rows (pipelines.warehouse
-- .record_quarantine_and_load), and every detection run drains the table: it reads every
-- pending row, recomputes those clients and then deletes exactly the rows it read, so a load
-- that commits meanwhile stays queued for the next run (pipelines/pending.py). Airflow's asset
-- events only wake detection up; this ledger is what says whom to detect, so a wake-up that
-- Airflow drops loses nothing (docs/operations.md, "Detection after loads").
-- No primary key: load_id and client_id are unique together by construction (a load names
-- each client once), and deletes from a keyed DuckDB table are slow.
create table if not exists detection_pending (
    clinic_id          varchar     not null,
    client_id          varchar     not null,
    load_id            bigint      not null,   -- the load that touched the client (loads.load_id)
    queued_at          timestamptz not null default now()
);
