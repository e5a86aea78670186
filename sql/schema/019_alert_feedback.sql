-- Clinicians' answers to their alerts (issue 19): one row per click on an answer link in a
-- digest or notice, loaded exactly once from the answers inbox by `ingest_feedback`
-- (pipelines/answers/load.py). The last answer of a clinician for an episode counts
-- (`alert_outcomes`); the token is never stored. clinic_id and client_id come from the episode
-- (for per-clinic snapshots and `forget`).
create table if not exists alert_feedback (
    answer_id          varchar      primary key,
    alert_episode_id   varchar      not null,
    clinic_id          varchar      not null,
    client_id          varchar      not null,
    clinician_id       varchar      not null,
    answer             varchar      not null,   -- rupture_talked | rupture_not_yet | not_rupture
    answered_at        timestamptz  not null,
    loaded_at          timestamptz  not null default current_timestamp
);
-- Answers the load did not take, with the reason (unknown_episode: no such alert episode, e.g.
-- a full recompute renumbered it; not_their_client: the clinician is not the episode's
-- clinician), so an operator sees them; never silently dropped.
create table if not exists alert_feedback_refused (
    answer_id          varchar      primary key,
    alert_episode_id   varchar,     -- null when unknown (it may be an erased client's)
    clinic_id          varchar,
    clinician_id       varchar      not null,
    answer             varchar      not null,
    answered_at        timestamptz  not null,
    reason             varchar      not null,
    loaded_at          timestamptz  not null default current_timestamp
);
