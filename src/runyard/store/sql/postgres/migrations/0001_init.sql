-- Runyard schema, PostgreSQL. Times are seconds since the epoch on the database clock.
CREATE OR REPLACE FUNCTION runyard_now() RETURNS double precision
  LANGUAGE sql VOLATILE AS $$ SELECT extract(epoch FROM clock_timestamp())::double precision $$;

CREATE TABLE workflows (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  description TEXT,
  input_schema TEXT NOT NULL,
  options TEXT NOT NULL,
  registered_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  updated_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  PRIMARY KEY (name, version)
);

CREATE TABLE workers (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  concurrency INTEGER NOT NULL,
  workflows TEXT NOT NULL,
  started_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  heartbeat_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  stopped_at DOUBLE PRECISION
);

CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  workflow_version TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'workflow',
  mode TEXT NOT NULL DEFAULT 'async',
  status TEXT NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  input_count INTEGER NOT NULL,
  item_count INTEGER NOT NULL,
  iteration INTEGER NOT NULL DEFAULT 1,
  task_id TEXT,
  schedule_id TEXT,
  parent_id TEXT,
  fork_position INTEGER,
  sync_mode TEXT,
  max_results INTEGER,
  options TEXT NOT NULL DEFAULT '{}',
  result TEXT,
  error TEXT,
  progress DOUBLE PRECISION,
  progress_message TEXT,
  credits DOUBLE PRECISION NOT NULL DEFAULT 0,
  waiting_for TEXT,
  flow_key TEXT,
  timeout_s DOUBLE PRECISION,
  deadline_at DOUBLE PRECISION,
  not_before DOUBLE PRECISION,
  max_recovery_attempts INTEGER NOT NULL DEFAULT 5,
  recovery_attempts INTEGER NOT NULL DEFAULT 0,
  has_on_failure BOOLEAN NOT NULL DEFAULT FALSE,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  started_at DOUBLE PRECISION,
  finished_at DOUBLE PRECISION,
  updated_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
-- Analyze the hot tables early and often: their plans must not go stale in a burst.
ALTER TABLE runs SET (autovacuum_analyze_threshold = 200, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_workflow ON runs (workflow, created_at);
CREATE INDEX runs_status ON runs (status, created_at);
CREATE INDEX runs_task ON runs (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX runs_schedule ON runs (schedule_id) WHERE schedule_id IS NOT NULL;
CREATE INDEX runs_scheduled ON runs (not_before) WHERE status = 'SCHEDULED';

CREATE TABLE run_transitions (
  id BIGSERIAL PRIMARY KEY,
  run_id TEXT NOT NULL,
  from_status TEXT,
  to_status TEXT NOT NULL,
  at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE INDEX run_transitions_run ON run_transitions (run_id, id);

-- Every status change is recorded with its time. (Wake-ups are not sent from here: a
-- NOTIFY inside a transaction takes a database-wide lock through its commit. The store
-- announces changes after committing instead; see DbExecutor.)
CREATE OR REPLACE FUNCTION runyard_run_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO run_transitions (run_id, from_status, to_status) VALUES (NEW.id, NULL, NEW.status);
  ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
    INSERT INTO run_transitions (run_id, from_status, to_status) VALUES (NEW.id, OLD.status, NEW.status);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER runs_status AFTER INSERT OR UPDATE OF status ON runs
  FOR EACH ROW EXECUTE FUNCTION runyard_run_status();

CREATE TABLE items (
  run_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  kind TEXT NOT NULL,              -- input | map | hook
  parent_idx INTEGER,
  name TEXT,
  wref TEXT NOT NULL,              -- workflow@version: which workers may claim it
  input TEXT,
  custom_data TEXT,
  state TEXT NOT NULL,
  result TEXT,
  error TEXT,
  priority INTEGER NOT NULL DEFAULT 0,
  flow_key TEXT,
  iteration INTEGER NOT NULL DEFAULT 1,
  generation INTEGER NOT NULL DEFAULT 0,
  attempt INTEGER NOT NULL DEFAULT 0,
  due_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  owner TEXT,
  epoch INTEGER NOT NULL DEFAULT 0,
  lease_expires_at DOUBLE PRECISION,
  last_position INTEGER NOT NULL DEFAULT 0,
  waiting_for TEXT,
  started_at DOUBLE PRECISION,
  finished_at DOUBLE PRECISION,
  PRIMARY KEY (run_id, idx)
);
ALTER TABLE items SET (autovacuum_analyze_threshold = 200, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX items_claim ON items (priority DESC, due_at)
  WHERE owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map';
CREATE INDEX items_lease ON items (lease_expires_at) WHERE owner IS NOT NULL;
CREATE INDEX items_owner ON items (owner) WHERE owner IS NOT NULL;
CREATE INDEX items_flow ON items (flow_key) WHERE flow_key IS NOT NULL AND owner IS NOT NULL;

CREATE TABLE steps (
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL,
  iteration INTEGER NOT NULL,
  position INTEGER NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,            -- completed | failed
  result TEXT,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 1,
  started_at DOUBLE PRECISION,
  completed_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  PRIMARY KEY (run_id, item_idx, iteration, position)
);

CREATE TABLE attempts (
  id BIGSERIAL PRIMARY KEY,
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL,
  iteration INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  position INTEGER NOT NULL,
  name TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,
  ended_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  error TEXT NOT NULL
);
CREATE INDEX attempts_run ON attempts (run_id, item_idx, iteration, position);

CREATE TABLE outputs (
  id BIGSERIAL PRIMARY KEY,
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL,
  iteration INTEGER NOT NULL,
  position INTEGER NOT NULL,
  key TEXT,
  data TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  UNIQUE (run_id, item_idx, iteration, position)
);
CREATE INDEX outputs_run ON outputs (run_id, id);
CREATE UNIQUE INDEX outputs_key ON outputs (run_id, key) WHERE key IS NOT NULL;

CREATE TABLE credits (
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL,
  iteration INTEGER NOT NULL,
  position INTEGER NOT NULL,
  workflow TEXT NOT NULL,
  action TEXT NOT NULL,
  amount DOUBLE PRECISION NOT NULL,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  PRIMARY KEY (run_id, item_idx, iteration, position)
);
CREATE INDEX credits_time ON credits (created_at);
-- A run's credits are the sum of its credit rows, kept up to date as rows arrive.
CREATE OR REPLACE FUNCTION runyard_credits_sum() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE runs SET credits = credits + NEW.amount WHERE id = NEW.run_id;
  RETURN NEW;
END $$;
CREATE TRIGGER credits_sum AFTER INSERT ON credits
  FOR EACH ROW EXECUTE FUNCTION runyard_credits_sum();

CREATE TABLE events (
  id BIGSERIAL PRIMARY KEY,
  event_id TEXT NOT NULL,
  data TEXT,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE INDEX events_key ON events (event_id, created_at);

CREATE TABLE waiters (
  event_id TEXT NOT NULL,
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL,
  position INTEGER NOT NULL,
  since DOUBLE PRECISION NOT NULL,
  deadline DOUBLE PRECISION,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  PRIMARY KEY (event_id, run_id, item_idx)
);
CREATE INDEX waiters_run ON waiters (run_id, item_idx);
CREATE INDEX waiters_since ON waiters (since);

CREATE TABLE sync_states (
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL,
  iteration INTEGER NOT NULL,
  state TEXT,
  saved_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  PRIMARY KEY (run_id, item_idx, iteration)
);

CREATE TABLE logs (
  id BIGSERIAL PRIMARY KEY,
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE INDEX logs_run ON logs (run_id, id);

CREATE TABLE flow_keys (
  key TEXT PRIMARY KEY,
  parallelism INTEGER,
  rate INTEGER,
  period_s DOUBLE PRECISION NOT NULL DEFAULT 1,
  updated_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE TABLE flow_starts (
  key TEXT NOT NULL,
  at DOUBLE PRECISION NOT NULL
);
CREATE INDEX flow_starts_key ON flow_starts (key, at);
CREATE TABLE flow_slots (
  key TEXT NOT NULL,
  holder TEXT NOT NULL,
  owner TEXT NOT NULL,
  expires_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (key, holder)
);

-- Parts exposed by later issues (tasks, schedules, callbacks, keys); the schema is
-- designed now so the engine's tables need no reshaping for them.
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  name TEXT,
  workflow TEXT NOT NULL,
  input TEXT,
  options TEXT NOT NULL DEFAULT '{}',
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  updated_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);

CREATE TABLE schedules (
  id TEXT PRIMARY KEY,
  workflow TEXT,
  task_id TEXT,
  cron TEXT,
  timezone TEXT NOT NULL DEFAULT 'UTC',
  at DOUBLE PRECISION,
  input TEXT,
  options TEXT NOT NULL DEFAULT '{}',
  overlap TEXT NOT NULL DEFAULT 'skip',
  catchup_s DOUBLE PRECISION NOT NULL DEFAULT 0,
  paused BOOLEAN NOT NULL DEFAULT FALSE,
  next_fire_at DOUBLE PRECISION,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  updated_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE TABLE schedule_fires (
  schedule_id TEXT NOT NULL,
  fire_at DOUBLE PRECISION NOT NULL,
  run_id TEXT,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  PRIMARY KEY (schedule_id, fire_at)
);

CREATE TABLE deliveries (
  id BIGSERIAL PRIMARY KEY,
  message_id TEXT NOT NULL,
  run_id TEXT NOT NULL,
  url TEXT NOT NULL,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  last_status INTEGER,
  last_error TEXT,
  owner TEXT,
  lease_expires_at DOUBLE PRECISION,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_run ON deliveries (run_id, id);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT,
  digest TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  last_used_at DOUBLE PRECISION,
  revoked_at DOUBLE PRECISION
);
