-- Superseded versions only; `measurements_history` becomes a view (sql/views/) of the current
-- rows in `measurements` plus these. Writing every loaded row twice (once as current, once as
-- history) was a third of a first load's cost; a version is now copied here only when a
-- correction replaces it, and the view shows exactly what the table held before.
create table measurements_superseded (
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
    superseded_at      timestamptz not null
);

insert into measurements_superseded select * from measurements_history where superseded_at is not null;

drop table measurements_history;
