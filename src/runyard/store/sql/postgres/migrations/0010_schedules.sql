-- Schedules (issue 20): the tables of 0001 were never used; reshaped. A schedule keeps its
-- spec as JSON, and what the scheduler reads often as columns: the next fire time
-- (nominal) and when it is due (with its jitter, or the time a buffered fire is looked
-- at again), the run of its latest fire (overlap), the fires left and its counters.
DROP TABLE IF EXISTS schedule_fires;
DROP TABLE IF EXISTS schedules;
CREATE TABLE schedules (
  id TEXT PRIMARY KEY,
  workflow TEXT,
  task_id TEXT,
  spec TEXT NOT NULL,
  paused BOOLEAN NOT NULL DEFAULT FALSE,
  note TEXT,
  next_fire_at DOUBLE PRECISION,
  due_at DOUBLE PRECISION,
  last_run_id TEXT,
  remaining_actions INTEGER,
  fired INTEGER NOT NULL DEFAULT 0,
  skipped INTEGER NOT NULL DEFAULT 0,
  start_failed INTEGER NOT NULL DEFAULT 0,
  buffered INTEGER NOT NULL DEFAULT 0,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  updated_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
-- The scheduler claims what is due, earliest first: cost by fires due, not schedules.
CREATE INDEX schedules_due ON schedules (due_at) WHERE NOT paused AND due_at IS NOT NULL;
-- One row per (schedule, fire time): a second process firing the same time inserts
-- nothing (no leader).
CREATE TABLE schedule_fires (
  schedule_id TEXT NOT NULL,
  fire_at DOUBLE PRECISION NOT NULL,
  kind TEXT NOT NULL,
  state TEXT NOT NULL,
  run_id TEXT,
  error TEXT,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  PRIMARY KEY (schedule_id, fire_at)
);
CREATE INDEX schedule_fires_pending ON schedule_fires (created_at) WHERE state = 'pending';
CREATE INDEX schedule_fires_buffered ON schedule_fires (schedule_id, fire_at) WHERE state = 'buffered';
-- Emits with a key are delivered once across a schedule's fires (incremental sync).
CREATE INDEX outputs_key_any ON outputs (key) WHERE key IS NOT NULL;
