-- Audit of erasures (alliance-watch forget): when, which clinic, how many rows left each
-- relation, and the operator's note. Never the client code, nor any hash of it: a salted or
-- unsalted hash is still a way to find the client again.
create sequence if not exists erasure_id_seq start 1;

create table if not exists erasures (
    erasure_id         bigint      primary key,
    clinic_id          varchar     not null,
    erased_at          timestamptz not null default now(),
    rows_removed       json        not null,   -- {"measurements": 12, "flags": 2, ...}
    operator_note      varchar                 -- e.g. a ticket number; checked not to name the client
);
