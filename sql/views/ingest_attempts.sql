-- Every ledger row of ingest_files as an attempt at a delivered file, with the stable reason
-- code of a rejection and whether the attempt was retried. A file removed, rewritten or
-- replaced while it was read ('changed_after_discovery') keeps its row under the hash of the
-- bytes it held then, and one that could not be opened ('unreadable') a row under its name;
-- both are offered again, and once a later attempt at the same file name exists such a row is
-- `retried` and counts as no file of its own. Any other row is never retried: a file judged
-- and rejected (a corrected config may judge it again, under the same row), and an
-- 'internal_error' or 'stage_full' (the stage disk was full), whose row the next attempt at
-- the same bytes replaces (when the bytes never come back, it stays a file received and not
-- loaded).
create or replace view ingest_attempts as
with attempts as (
    select
        *,
        case
            when status = 'rejected'
                then nullif(trim(split_part(coalesce(error, ''), ':', 1)), '')
        end as reason_code,
        lead(received_at) over (
            partition by clinic_id, file_name
            order by received_at
        ) as next_attempt_at
    from ingest_files
)

select
    * exclude (next_attempt_at),
    coalesce(
        reason_code in ('changed_after_discovery', 'unreadable')
        and next_attempt_at is not null,
        false
    ) as retried
from attempts
