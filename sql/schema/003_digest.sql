-- Delivery ledger of the weekly digests: who was sent which digest for which week.
-- One row per (clinic, clinician, week, kind); a row with status 'sent' is final, so
-- re-running a week never resends. 'failed' rows are retried on the next run (attempts adds
-- up); 'written' means the files are in the outbox but no email went out (no SMTP or no
-- recipient address). The data-team summary uses clinician_id = '' (no clinician).
-- No address is stored: the recipient is looked up in the clinic config at send time.
create table if not exists digest_deliveries (
    clinic_id          varchar   not null,
    clinician_id       varchar   not null,   -- '' for the data-team summary
    week_start         date      not null,   -- first day covered (the run date minus 7 days)
    kind               varchar   not null,   -- clinician | data_team
    message_id         varchar,
    status             varchar   not null,   -- sent | failed | written
    attempts           integer   not null default 0,
    error              varchar,              -- SMTP status / exception type, never content
    sent_at            timestamptz,
    outbox_path        varchar,
    n_clients          integer,              -- clients listed (flagged + repaired)
    updated_at         timestamptz not null default now(),
    primary key (clinic_id, clinician_id, week_start, kind)
);
