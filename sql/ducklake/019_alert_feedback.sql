-- Clinicians' answers to their alerts (issue 19).
-- (The DuckLake counterpart of sql/schema/019_alert_feedback.sql: no keys, no defaults; the
-- loader writes every column and skips answer ids already loaded.)
create table alert_feedback (
    answer_id          varchar not null,
    alert_episode_id   varchar not null,
    clinic_id          varchar not null,
    client_id          varchar not null,
    clinician_id       varchar not null,
    answer             varchar not null,
    answered_at        timestamptz not null,
    loaded_at          timestamptz not null
);
create table alert_feedback_refused (
    answer_id          varchar not null,
    alert_episode_id   varchar,
    clinic_id          varchar,
    clinician_id       varchar not null,
    answer             varchar not null,
    answered_at        timestamptz not null,
    reason             varchar not null,
    loaded_at          timestamptz not null
);
