-- Runs lists walk one index in list order and stop after the page (see list_runs_* in
-- queries.sql). With the id as last column a cursor's (created_at, id) bound is a range
-- of the index; the workflow's index leads with the status as well, so that a list
-- filtered by workflow and status (the dashboard's, the bench's open-run count) walks
-- only its rows, and one filtered by workflow alone merges one walk per status.
DROP INDEX IF EXISTS runs_status;
DROP INDEX IF EXISTS runs_workflow;
CREATE INDEX runs_status ON runs (status, created_at, id);
CREATE INDEX runs_workflow ON runs (workflow, status, created_at, id);
