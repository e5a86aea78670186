-- Core warehouse relations. Applied once, in order, by pipelines.warehouse.migrate();
-- the applied version is recorded in schema_migrations. Never edit an applied file:
-- add the next numbered one.

create sequence if not exists load_id_seq start 1;

-- One row per delivered file (the content-hash ledger). rows_in = rows_loaded +
-- rows_quarantined + rows_duplicate for every file.
create table if not exists ingest_files (
    clinic_id          varchar   not null,
    file_name          varchar   not null,   -- name as delivered, without folders
    sha256             varchar   not null,
    dataset            varchar,              -- measures | appointments
    status             varchar   not null,   -- loaded | loaded_with_quarantine | rejected | duplicate
    rows_in            bigint    not null default 0,
    rows_loaded        bigint    not null default 0,
    rows_quarantined   bigint    not null default 0,
    rows_duplicate     bigint    not null default 0,
    error              varchar,              -- file-level reason (rejected / duplicate)
    top_reasons        varchar[],            -- most frequent row-level reasons
    data_docs_path     varchar,
    load_id            bigint,
    bytes              bigint,
    ignored_columns    varchar[],            -- unknown, non-identifying headers (not loaded)
    received_at        timestamptz not null default now(),
    -- a re-delivery of the same bytes under another name gets its own row (status duplicate)
    primary key (clinic_id, sha256, file_name)
);

-- Current values: one row per (clinic, client, session, instrument).
create table if not exists measurements (
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    session_number     integer   not null,
    session_date       date      not null,
    instrument         varchar   not null,
    instrument_version varchar   not null,
    item_1  double, item_2  double, item_3  double, item_4  double,
    item_5  double, item_6  double, item_7  double, item_8  double,
    item_9  double, item_10 double, item_11 double, item_12 double,
    total              double    not null,   -- registry scoring (sum, or mean for WAI-SR)
    source_file        varchar   not null,
    source_line        bigint    not null,
    sha256             varchar   not null,
    load_id            bigint    not null,
    loaded_at          timestamptz not null default now(),
    primary key (clinic_id, client_id, session_number, instrument)
);

-- Every version ever loaded; a correction supersedes but never deletes.
create table if not exists measurements_history (
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    session_number     integer   not null,
    session_date       date      not null,
    instrument         varchar   not null,
    instrument_version varchar   not null,
    item_1  double, item_2  double, item_3  double, item_4  double,
    item_5  double, item_6  double, item_7  double, item_8  double,
    item_9  double, item_10 double, item_11 double, item_12 double,
    total              double    not null,
    source_file        varchar   not null,
    source_line        bigint    not null,
    sha256             varchar   not null,
    load_id            bigint    not null,
    loaded_at          timestamptz not null default now(),
    superseded_at      timestamptz          -- null while current
);

create table if not exists appointments (
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    appointment_date   date      not null,
    status             varchar   not null,   -- attended | cancelled | no_show | cancelled_by_clinic
    source_file        varchar   not null,
    source_line        bigint    not null,
    sha256             varchar   not null,
    load_id            bigint    not null,
    primary key (clinic_id, client_id, appointment_date)
);

-- Rows not loaded, with every reason, minus any identifying value (replaced by '[redacted]').
create table if not exists quarantined_rows (
    clinic_id          varchar   not null,
    file_name          varchar   not null,
    sha256             varchar   not null,
    line_number        bigint    not null,   -- 1-based line in the delivered file (header = 1)
    reasons            varchar[] not null,
    row_data           json,                 -- the row as delivered, identifying values redacted
    load_id            bigint
);

-- Which clients each load touched: the input of incremental detection.
create table if not exists loads (
    load_id            bigint    primary key,
    clinic_id          varchar   not null,
    sha256             varchar   not null,
    client_ids         varchar[] not null,
    rows_loaded        bigint    not null,
    loaded_at          timestamptz not null default now()
);

-- One row per session at which a client is flagged (CONTRACT).
create table if not exists flags (
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
    primary key (clinic_id, client_id, session_number, instrument)
);

create table if not exists alert_episodes (
    alert_episode_id   varchar   primary key,
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    instrument         varchar   not null,
    opened_session     integer   not null,
    opened_date        date      not null,
    last_flag_session  integer   not null,
    max_severity       varchar   not null,
    status             varchar   not null,   -- ongoing | repaired | ended
    closed_session     integer,
    closed_date        date
);

create table if not exists instruments (
    instrument         varchar   primary key,
    name               varchar,
    construct          varchar,
    n_items            integer,
    item_min           double,
    item_max           double,
    scoring            varchar,
    direction          varchar,
    total_min          double,
    total_max          double,
    cutoff             double,
    sd                 double,
    reliability        double,
    reliable_change    double,
    citation           varchar
);
