-- How a run ends once none of its inputs is open: defined here once for every statement
-- that ends runs (finalize_run, and finish_items_steps for outcomes written together).
-- From its inputs (n of them: ok completed, failed, discarded), its input_count, the
-- first input's result and error, every input's result as a JSON array in index order,
-- and its progress so far: its status, result, error and progress. (One row, declared a
-- set of rows so that the planner inlines it where it is called, FROM a sub-SELECT: a
-- function called as such costs an executor of its own each call, 20 us a run ended.)
CREATE TYPE runyard_run_outcome AS (
  status TEXT,
  result TEXT,
  error TEXT,
  progress DOUBLE PRECISION
);

CREATE FUNCTION runyard_run_outcome(
  n BIGINT, ok BIGINT, failed BIGINT, discarded BIGINT, input_count INTEGER,
  first_result TEXT, first_error TEXT, results TEXT, progress DOUBLE PRECISION
) RETURNS SETOF runyard_run_outcome ROWS 1 LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT
    CASE WHEN ok = n THEN 'SUCCEEDED' WHEN discarded = n THEN 'INVALID'
         WHEN ok = 0 THEN 'FAILED' ELSE 'PARTIAL_SUCCEEDED' END,
    CASE WHEN input_count = 1 THEN first_result ELSE results END,
    CASE WHEN ok = n THEN NULL
         WHEN input_count = 1 THEN first_error
         WHEN discarded = n THEN json_build_object('code', 'invalid_input',
                'message', 'all ' || n || ' inputs were discarded: none matches '
                  || 'the workflow''s input type (each item has its error)',
                'discarded', discarded)::text
         ELSE json_build_object('code', 'items_failed', 'message',
                failed || ' input(s) failed, ' || discarded || ' discarded',
                'failed', failed, 'discarded', discarded)::text END,
    CASE WHEN ok = n THEN 1.0 ELSE progress END
$$;
