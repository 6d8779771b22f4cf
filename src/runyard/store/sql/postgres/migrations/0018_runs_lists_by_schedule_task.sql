-- Runs lists filtered by schedule or by task walk an index in list order and stop after
-- the page (as the status and workflow lists do): the single-column indexes of 0001
-- found a schedule's runs but left them all to be sorted, and a plan that walked
-- runs_created instead read the whole history for a task with few runs. The new ones
-- serve every "runs of this schedule / task" lookup the old ones did.
DROP INDEX IF EXISTS runs_task;
DROP INDEX IF EXISTS runs_schedule;
CREATE INDEX runs_task ON runs (task_id, created_at, id) WHERE task_id IS NOT NULL;
CREATE INDEX runs_schedule ON runs (schedule_id, created_at, id) WHERE schedule_id IS NOT NULL;
