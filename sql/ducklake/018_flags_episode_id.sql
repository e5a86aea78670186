-- Detection keeps a client's treatment episodes apart.
-- (The DuckLake counterpart of sql/schema/018_flags_episode_id.sql: no defaults; detection
-- writes every column.)
alter table flags add column episode_id varchar;
alter table alert_episodes add column episode_id varchar;
-- rows detected before: the one episode '' (no default fills them here)
update flags set episode_id = '' where episode_id is null;
update alert_episodes set episode_id = '' where episode_id is null;
