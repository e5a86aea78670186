-- What the warehouse knows of each clinic's config, so that views judge a clinic by its own
-- rules: its timezone (weeks of receipt in local time, as the data-team summary counts them)
-- and its delivery cadence (a feed is stale after cadence_days, as the freshness notice
-- says). Written by every ingest for each configured clinic.
create table if not exists clinic_settings (
    clinic_id      varchar primary key,
    timezone       varchar not null,
    cadence_days   integer not null,
    updated_at     timestamptz not null default now()
);
