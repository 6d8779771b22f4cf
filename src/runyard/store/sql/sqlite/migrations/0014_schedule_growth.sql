-- Schedules (issue 20): reads and records that stay bounded as a schedule's fires pile up.
--
-- The sync state a fire starts from is the latest successful earlier run of its schedule:
-- a walk of this index from its newest end.
CREATE INDEX runs_schedule_succeeded ON runs (schedule_id, finished_at)
  WHERE schedule_id IS NOT NULL AND status IN ('SUCCEEDED', 'PARTIAL_SUCCEEDED');
-- A key emitted by an earlier fire of the same schedule is not stored again: a keyed output
-- carries its run's schedule (set as it is inserted), and the check is one probe of
-- (schedule, key) instead of a walk of every output with that key.
ALTER TABLE outputs ADD COLUMN schedule_id TEXT;
UPDATE outputs SET schedule_id = (SELECT r.schedule_id FROM runs r WHERE r.id = outputs.run_id)
WHERE key IS NOT NULL;
CREATE TRIGGER outputs_schedule AFTER INSERT ON outputs
  WHEN NEW.key IS NOT NULL BEGIN
  UPDATE outputs SET schedule_id = (SELECT schedule_id FROM runs WHERE id = NEW.run_id)
  WHERE id = NEW.id AND (SELECT schedule_id FROM runs WHERE id = NEW.run_id) IS NOT NULL;
END;
CREATE INDEX outputs_schedule_key ON outputs (schedule_id, key)
  WHERE schedule_id IS NOT NULL AND key IS NOT NULL;
DROP INDEX outputs_key_any;
-- Fires with no run (skipped, missed, failed to start) are deleted once older than the
-- retention of runs, oldest first, a batch at a time.
CREATE INDEX schedule_fires_runless ON schedule_fires (created_at)
  WHERE state IN ('skipped', 'missed', 'failed');
