-- Detection keeps a client's treatment episodes apart (migration 017): a flag and an alert
-- episode belong to one treatment episode ('' when the export has none). Rows written before
-- this migration belong to the one episode ''.
alter table flags add column episode_id varchar default '';
alter table alert_episodes add column episode_id varchar default '';
