-- Alliance sessions detection leaves out, as the last detection found them, with the reason the
-- clinic's data team reads: a session dated after a higher-numbered session of the same series
-- (clinic, client, treatment episode, instrument), e.g. a REDCap repeat instance entered late or
-- a typo in a date (sql/detect/dated_out_of_order.sql). The session stays in `measurements`;
-- detection uses it again once its date or number is corrected. Every detection rewrites the
-- rows of the clinics it computed, so incremental and full runs leave the same rows.
-- `later_session_number` / `later_session_date`: the higher-numbered session dated before it.
create table if not exists detect_excluded_sessions (
    clinic_id             varchar not null,
    client_id             varchar not null,
    episode_id            varchar not null,
    instrument            varchar not null,
    session_number        integer not null,
    session_date          date not null,
    later_session_number  integer not null,
    later_session_date    date not null,
    source_file           varchar,
    source_line           bigint,
    reason                varchar not null
);
