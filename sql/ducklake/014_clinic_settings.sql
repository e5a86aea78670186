-- What the warehouse knows of each clinic's config (timezone, delivery cadence) for the views.
-- (The DuckLake counterpart of sql/schema/014_clinic_settings.sql: no key, no default.)
create table clinic_settings (
    clinic_id      varchar not null,
    timezone       varchar not null,
    cadence_days   integer not null,
    updated_at     timestamptz not null
);
