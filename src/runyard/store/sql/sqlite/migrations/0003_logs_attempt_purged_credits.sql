-- A run's log lines name the iteration and attempt of the execution that wrote them.
ALTER TABLE logs ADD COLUMN iteration INTEGER NOT NULL DEFAULT 1;
ALTER TABLE logs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;

-- The credits of runs purged by retention (store/retention.py), without their run: usage
-- over a period (GET /v1/usage) outlives the runs that recorded it.
CREATE TABLE purged_credits (
  workflow TEXT NOT NULL,
  action TEXT NOT NULL,
  amount REAL NOT NULL,
  created_at REAL NOT NULL
);
CREATE INDEX purged_credits_time ON purged_credits (created_at);
