-- Every ledger row of ingest_files as an attempt at a delivered file, with the stable reason
-- code of its error and whether it was retried. A file whose content was not judged (a fault
-- of ours, 'internal_error'; a file removed, rewritten or replaced while it was read,
-- 'changed_after_discovery'; a file that could not be opened, 'unreadable') is offered again
-- with every run, and every attempt adds a row: such an attempt is `retried` once a later
-- attempt at the same file name exists, and counts as no file of its own. Any other row is
-- never retried, a file rejected under an earlier clinic config included (it was judged).
create or replace view ingest_attempts as
with attempts as (
    select
        *,
        nullif(trim(split_part(coalesce(error, ''), ':', 1)), '') as reason_code,
        lead(received_at) over (
            partition by clinic_id, file_name
            order by received_at
        ) as next_attempt_at
    from ingest_files
)

select
    * exclude (next_attempt_at),
    status = 'rejected'
    and reason_code in ('internal_error', 'changed_after_discovery', 'unreadable')
    and next_attempt_at is not null as retried
from attempts
