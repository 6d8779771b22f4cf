-- Runs lists sorted by started_at or finished_at (runs_sorted_by_* in queries.sql) walk
-- an index on the sort key in list order and stop after the page, as the created_at and
-- status sorts do: the time (one not yet set as infinity), then created_at and id.
CREATE INDEX runs_started_key ON runs ((coalesce(started_at, 9e999)), created_at, id);
CREATE INDEX runs_finished_key ON runs ((coalesce(finished_at, 9e999)), created_at, id);
