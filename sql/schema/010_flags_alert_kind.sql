-- flags without the primary key, with `alert_kind`.
-- Deleting from a table with a four-column primary key costs ~0.1 ms a row in DuckDB 1.4 (200k
-- flags took 22 s), and DuckDB 1.4 cannot drop a constraint: the table is rebuilt with the same
-- CONTRACT columns, in the same order, and no index. detect() writes exactly one row per
-- (clinic_id, client_id, session_number, instrument) (tests/test_detect.py checks it).
-- `is_new` is now strictly the first session of its episode (CONTRACT); `alert_kind` says what a
-- flag is to the clinician: opened (is_new), escalated (a flag that raised an open episode's
-- severity) or ongoing. Existing rows take it from their evidence, which held it until now.
create table flags_rebuilt (
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    session_number     integer   not null,
    session_date       date      not null,
    instrument         varchar   not null,
    severity           varchar   not null,   -- high | medium | low
    reasons            varchar[] not null,   -- rule codes
    alert_episode_id   varchar   not null,
    is_new             boolean   not null,   -- first session of its episode
    total              double,
    previous_total     double,
    baseline_total     double,
    delta_previous     double,
    delta_baseline     double,
    reliable_change    double,
    cutoff             double,
    fallen_part        varchar,              -- bond | goal_task | overall
    evidence           json,
    detected_at        timestamptz not null default now(),
    alert_kind         varchar   not null default 'ongoing'  -- opened | escalated | ongoing
);

insert into flags_rebuilt
select
    clinic_id, client_id, clinician_id, session_number, session_date, instrument, severity,
    reasons, alert_episode_id,
    coalesce(evidence ->> 'alert_kind', case when is_new then 'opened' end) = 'opened' as is_new,
    total, previous_total, baseline_total, delta_previous, delta_baseline, reliable_change, cutoff,
    fallen_part, evidence, detected_at,
    case coalesce(evidence ->> 'alert_kind', case when is_new then 'opened' end)
        when 'opened' then 'opened'
        when 'escalated' then 'escalated'
        else 'ongoing'
    end as alert_kind
from flags;

drop table flags;

alter table flags_rebuilt rename to flags;
