-- The warehouse relations for a DuckLake warehouse (catalog in PostgreSQL, Parquet data on a
-- shared path), applied by pipelines.ducklake.migrate(). Same tables and CONTRACT columns as
-- sql/schema/ after its last migration (011), adapted to what DuckLake supports:
-- * no primary keys, unique constraints, sequences or indexes: keys are kept by the loader
--   (delete changed keys + insert, one transaction per file) and by detect(), which writes one
--   row per key; load ids come from a PostgreSQL sequence in the catalog database;
-- * defaults must be literals: timestamps (received_at, loaded_at, ...) are written explicitly.
-- A new sql/schema/ migration needs its DuckLake counterpart here, as the next numbered file.

-- One row per delivered file (the content-hash ledger); key (clinic_id, sha256, file_name).
create table if not exists ingest_files (
    clinic_id          varchar   not null,
    file_name          varchar   not null,
    sha256             varchar   not null,
    dataset            varchar,
    status             varchar   not null,
    rows_in            bigint    not null default 0,
    rows_loaded        bigint    not null default 0,
    rows_quarantined   bigint    not null default 0,
    rows_duplicate     bigint    not null default 0,
    error              varchar,
    top_reasons        varchar[],
    data_docs_path     varchar,
    load_id            bigint,
    bytes              bigint,
    ignored_columns    varchar[],
    received_at        timestamptz not null,
    config_sha         varchar
);

-- Current values; key (clinic_id, client_id, session_number, instrument).
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
    total              double    not null,
    source_file        varchar   not null,
    source_line        bigint    not null,
    sha256             varchar   not null,
    load_id            bigint    not null,
    loaded_at          timestamptz not null
);

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
    loaded_at          timestamptz not null,
    superseded_at      timestamptz
);

-- key (clinic_id, client_id, appointment_date)
create table if not exists appointments (
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    appointment_date   date      not null,
    status             varchar   not null,
    source_file        varchar   not null,
    source_line        bigint    not null,
    sha256             varchar   not null,
    load_id            bigint    not null
);

create table if not exists quarantined_rows (
    clinic_id          varchar   not null,
    file_name          varchar   not null,
    sha256             varchar   not null,
    line_number        bigint    not null,
    reasons            varchar[] not null,
    row_data           json,
    load_id            bigint
);

create table if not exists loads (
    load_id            bigint    not null,
    clinic_id          varchar   not null,
    sha256             varchar   not null,
    client_ids         varchar[] not null,
    rows_loaded        bigint    not null,
    loaded_at          timestamptz not null
);

-- One row per clinic; every file load of the clinic updates it, so two loads of the same
-- clinic at once conflict (DuckLake appends never do) and the later one retries and then finds
-- the other's ledger row: exactly once per file with several writers.
create table if not exists clinic_load_tokens (
    clinic_id          varchar   not null,
    loads              bigint    not null default 0
);

-- key (clinic_id, client_id, session_number, instrument); detected_at is stamped after detect()
create table if not exists flags (
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    session_number     integer   not null,
    session_date       date      not null,
    instrument         varchar   not null,
    severity           varchar   not null,
    reasons            varchar[] not null,
    alert_episode_id   varchar   not null,
    is_new             boolean   not null,
    total              double,
    previous_total     double,
    baseline_total     double,
    delta_previous     double,
    delta_baseline     double,
    reliable_change    double,
    cutoff             double,
    fallen_part        varchar,
    evidence           json,
    detected_at        timestamptz,
    alert_kind         varchar   not null default 'ongoing'
);

create table if not exists alert_episodes (
    alert_episode_id   varchar   not null,
    clinic_id          varchar   not null,
    client_id          varchar   not null,
    clinician_id       varchar   not null,
    instrument         varchar   not null,
    opened_session     integer   not null,
    opened_date        date      not null,
    last_flag_session  integer   not null,
    max_severity       varchar   not null,
    status             varchar   not null,
    closed_session     integer,
    closed_date        date
);

create table if not exists instruments (
    instrument         varchar   not null,
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

create table if not exists digest_deliveries (
    clinic_id          varchar   not null,
    clinician_id       varchar   not null,
    week_start         date      not null,
    kind               varchar   not null,
    message_id         varchar,
    status             varchar   not null,
    attempts           integer   not null default 0,
    error              varchar,
    sent_at            timestamptz,
    outbox_path        varchar,
    n_clients          integer,
    updated_at         timestamptz
);

create table if not exists erasures (
    erasure_id         bigint      not null,
    clinic_id          varchar     not null,
    erased_at          timestamptz not null,
    rows_removed       json        not null,
    operator_note      varchar
);
