-- Runyard queries, PostgreSQL. Claims use FOR UPDATE SKIP LOCKED; a flow-control key
-- is locked FOR UPDATE while its capacity is checked and taken; event senders and
-- waiters meet under a per-event advisory lock. runyard_now() is the database clock.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS runyard_migrations (
  version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL
);

-- name: lock_migrations
SELECT pg_advisory_xact_lock(7207413551);

-- name: applied_migrations
SELECT version FROM runyard_migrations ORDER BY version;

-- name: record_migration
INSERT INTO runyard_migrations (version, name, applied_at)
VALUES (%(version)s, %(name)s, extract(epoch FROM clock_timestamp()));

-- name: now
SELECT runyard_now() AS now;

-- name: notify
-- Announcements of committed changes are sent after the COMMIT, as a transaction of their
-- own (one statement): a NOTIFY inside the main transaction would hold a database-wide
-- lock through its commit. Up to 32 run ids travel in one notification, separated by
-- spaces (run ids hold none): every notification costs the server a queue entry and each
-- listening process a wake-up, whatever its size (measured: one per run ended took 0.1 ms
-- of database CPU per run). Most transactions announce one thing: this statement, the
-- cheapest to plan and run (0.15 ms a transaction against 0.3 for notify_many and 0.6 for
-- a statement that also looked at runs, measured from an idle connection).
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: notify_many
SELECT pg_notify(c, p) FROM unnest(%(channels)s::text[], %(payloads)s::text[]) AS t(c, p);

-- name: notify_ended
-- runyard_run for those of the runs that have ended by now, for a writer that could not
-- tell whether its change ended them without waiting for the answer; the ids notified
-- (for the hubs of the writer's own process). The test is a scalar subquery, one
-- primary-key lookup per id: written as EXISTS, the statement cost 0.6 ms a call in a
-- busy database (perf showed a hashed subplan scanning runs), 0.06 as it is.
SELECT pg_notify('runyard_run', string_agg(p, ' ' ORDER BY n)) AS notified,
       string_agg(p, ' ' ORDER BY n) AS run_ids
FROM unnest(%(run_ids)s::text[]) WITH ORDINALITY AS t(p, n)
WHERE (SELECT status FROM runs WHERE id = p)
      IN ('SUCCEEDED', 'PARTIAL_SUCCEEDED', 'FAILED', 'CANCELED', 'CRASHED', 'INVALID')
GROUP BY (n - 1) / 32;

-- name: txn_settings
-- For the rest of the transaction: commit without waiting for the disk ('off'; NULL:
-- as the session does), wait for a row lock at most so many milliseconds (NULL: as the
-- session does).
SELECT set_config('synchronous_commit',
         coalesce(%(synchronous_commit)s::text, current_setting('synchronous_commit')), true),
       set_config('lock_timeout',
         coalesce(%(lock_timeout)s::text, current_setting('lock_timeout')), true);

-- name: upsert_workflow
INSERT INTO workflows (name, version, description, input_schema, options)
VALUES (%(name)s, %(version)s, %(description)s, %(input_schema)s, %(options)s)
ON CONFLICT (name, version) DO UPDATE SET description = excluded.description,
  input_schema = excluded.input_schema, options = excluded.options, updated_at = runyard_now();

-- name: list_workflows
SELECT name, version, description, input_schema, options, registered_at, updated_at
FROM workflows ORDER BY name, updated_at DESC;

-- name: get_workflow
SELECT name, version, description, input_schema, options, registered_at, updated_at
FROM workflows WHERE name = %(name)s AND (%(version)s::text IS NULL OR version = %(version)s)
ORDER BY updated_at DESC LIMIT 1;

-- name: upsert_flow_key
-- A definition that names the key without limits (parallelism and rate both NULL) uses
-- the key as it is: the limits stored for it stay.
INSERT INTO flow_keys (key, parallelism, rate, period_s)
VALUES (%(key)s, %(parallelism)s, %(rate)s, %(period_s)s)
ON CONFLICT (key) DO UPDATE SET parallelism = excluded.parallelism, rate = excluded.rate,
  period_s = excluded.period_s, updated_at = runyard_now()
WHERE excluded.parallelism IS NOT NULL OR excluded.rate IS NOT NULL;

-- name: upsert_worker
INSERT INTO workers (id, host, pid, concurrency, workflows)
VALUES (%(id)s, %(host)s, %(pid)s, %(concurrency)s, %(workflows)s)
ON CONFLICT (id) DO UPDATE SET workflows = excluded.workflows, heartbeat_at = runyard_now();

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = runyard_now() WHERE id = %(id)s;

-- name: worker_stopped
UPDATE workers SET stopped_at = runyard_now() WHERE id = %(id)s;

-- name: insert_run
INSERT INTO runs (id, workflow, workflow_version, mode, status, priority, input_count,
  item_count, task_id, schedule_id, parent_id, sync_mode, max_results, options, flow_key,
  timeout_s, not_before, max_recovery_attempts, has_on_failure, error, finished_at,
  request)
VALUES (%(id)s, %(workflow)s, %(workflow_version)s, %(mode)s, %(status)s, %(priority)s, %(input_count)s,
  %(input_count)s, %(task_id)s, %(schedule_id)s, %(parent_id)s, %(sync_mode)s, %(max_results)s, %(options)s,
  %(flow_key)s, %(timeout_s)s, coalesce(%(not_before)s::double precision, runyard_now() + %(delay_s)s::double precision),
  %(max_recovery_attempts)s, %(has_on_failure)s, %(error)s,
  CASE WHEN %(status)s = 'INVALID' THEN runyard_now() END,
  %(request)s)
ON CONFLICT (id) DO NOTHING
RETURNING *, coalesce(not_before, created_at) AS due_at;

-- name: insert_item
-- The run's row gives the item its due time, priority and flow key (an item due later
-- is parked until then); an existing run (an idempotent retry) already has its items, so
-- the insert does nothing.
INSERT INTO items (run_id, idx, kind, wref, input, custom_data, state, error, priority,
  flow_key, iteration, due_at, finished_at, parked)
SELECT r.id, %(idx)s, 'input', %(wref)s, %(input)s, %(custom_data)s, %(state)s, %(error)s,
  r.priority, r.flow_key, r.iteration, coalesce(r.not_before, r.created_at),
  CASE WHEN %(state)s = 'discarded' THEN runyard_now() END,
  CASE WHEN coalesce(r.not_before, r.created_at) > runyard_now() THEN 1 ELSE 0 END
FROM runs r WHERE r.id = %(run_id)s
ON CONFLICT DO NOTHING;

-- name: nested_loops
-- For the rest of the transaction, join by index lookups only. A statement that joins the
-- rows of a JSON parameter (estimated at 100, however few) to items would otherwise hash
-- every item the workers own (a scan of a partial index of owned items, dead entries
-- included until a vacuum) to find the handful it names: measured 1.4 ms a group of ten
-- outcomes in a busy database, growing with its history; 1.0 with this.
SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);

-- name: insert_runs
-- insert_run and insert_item for several runs in one statement (the runs a group of
-- triggers creates), each a row of a JSON parameter. Items are inserted for the runs
-- inserted only: a run that existed already has its items.
WITH n AS (
  SELECT * FROM json_to_recordset(%(runs)s::json) AS n(id text, workflow text,
    workflow_version text, mode text, status text, priority int, input_count int,
    task_id text, schedule_id text, parent_id text, sync_mode text, max_results int,
    options text, flow_key text, timeout_s double precision, not_before double precision,
    delay_s double precision, max_recovery_attempts int, has_on_failure boolean, error text,
    request text)),
r AS (
  INSERT INTO runs (id, workflow, workflow_version, mode, status, priority, input_count,
    item_count, task_id, schedule_id, parent_id, sync_mode, max_results, options, flow_key,
    timeout_s, not_before, max_recovery_attempts, has_on_failure, error, finished_at,
    request)
  SELECT id, workflow, workflow_version, mode, status, priority, input_count, input_count,
    task_id, schedule_id, parent_id, sync_mode, max_results, options, flow_key, timeout_s,
    coalesce(not_before, runyard_now() + delay_s), max_recovery_attempts, has_on_failure,
    error, CASE WHEN status = 'INVALID' THEN runyard_now() END, request
  FROM n ORDER BY id
  ON CONFLICT (id) DO NOTHING
  RETURNING *, coalesce(not_before, created_at) AS due_at),
i AS (
  INSERT INTO items (run_id, idx, kind, wref, input, custom_data, state, error, priority,
    flow_key, iteration, due_at, finished_at, parked)
  SELECT r.id, c.idx, 'input', c.wref, c.input, c.custom_data, c.state, c.error,
    r.priority, r.flow_key, r.iteration, r.due_at,
    CASE WHEN c.state = 'discarded' THEN runyard_now() END,
    CASE WHEN r.due_at > runyard_now() THEN 1 ELSE 0 END
  FROM json_to_recordset(%(items)s::json) AS c(run_id text, idx int, wref text, input text,
         custom_data text, state text, error text)
  JOIN r ON r.id = c.run_id)
SELECT * FROM r;

-- name: promote_scheduled
UPDATE runs SET status = 'QUEUED', updated_at = runyard_now()
WHERE id IN (SELECT id FROM runs
             WHERE status = 'SCHEDULED' AND not_before <= (SELECT runyard_now())
             FOR UPDATE SKIP LOCKED);

-- name: unpark_due
-- Parked items whose time came are ready again (with a claim that scans, every ~100 ms
-- and after a wake-up; an index probe when none came due). Bounded: the rest come with
-- the next scans. (A bound on an index
-- is (SELECT runyard_now()), computed once: runyard_now() itself is volatile, a filter
-- applied to every row the index holds.)
UPDATE items SET parked = 0
WHERE (run_id, idx) IN (
  SELECT run_id, idx FROM items
  WHERE parked = 1 AND owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map'
    AND due_at <= (SELECT runyard_now())
  ORDER BY due_at LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED);

-- name: next_due
-- Seconds until the first parked item comes due (a sleep's end, a delayed run's start),
-- by the database's clock; negative: due, not readied yet (past unpark_due's batch, or
-- locked); NULL: none. With each scan, so that the worker wakes when it is due whatever
-- the wake-ups said: the time a trigger announces is read from its own clock before the
-- database's (a few ms early; more from another host), and one that came early found
-- nothing to claim. The first entry of items_parked: one probe.
SELECT (SELECT min(due_at) FROM items
        WHERE parked = 1 AND owner IS NULL AND state IN ('queued', 'processing')
          AND kind <> 'map') - runyard_now() AS due_in;

-- name: autovacuum_on
SELECT current_setting('autovacuum') = 'on' AS on;

-- name: vacuum_items
-- A claim leaves its items' old entries at the front of items_ready, where every later
-- claim walks past them until a vacuum removes them (after 50,000 claims a claim's walk
-- took 2.0 ms, 0.02 ms after this). Autovacuum does it; where it is off, workers do
-- (see Worker._upkeep_loop). SKIP_LOCKED: a vacuum already running is enough.
VACUUM (SKIP_LOCKED) items;

-- name: claim
-- Ready items without a flow-control key, best first, claimed and their runs started in
-- one statement; each row carries its run's columns. Each workflow reference is one walk
-- of items_ready in claim order that stops after `limit` rows (a backlog of any size
-- costs a batch); the walks are merged and the best `limit` claimed (the other rows
-- they locked are left to the next claim). A run is written only when its claim changes
-- it (its first, or after a wait): the items of one run do not queue on its row.
WITH c AS (
  SELECT x.run_id, x.idx FROM unnest(%(wrefs)s::text[]) AS w(wref)
  CROSS JOIN LATERAL (
    SELECT i.run_id, i.idx, i.priority, i.due_at FROM items i
    WHERE i.wref = w.wref AND i.flow_key IS NULL AND i.parked = 0 AND i.owner IS NULL
      AND i.state IN ('queued', 'processing') AND i.kind <> 'map'
    ORDER BY i.priority DESC, i.due_at LIMIT %(limit)s
    FOR UPDATE OF i SKIP LOCKED) AS x
  ORDER BY x.priority DESC, x.due_at LIMIT %(limit)s),
claimed AS (
  UPDATE items i SET owner = %(owner)s, epoch = i.epoch + 1,
    lease_expires_at = runyard_now() + %(lease_s)s, state = 'processing',
    attempt = i.attempt + 1, started_at = coalesce(i.started_at, runyard_now()),
    waiting_for = NULL
  FROM c WHERE i.run_id = c.run_id AND i.idx = c.idx
  RETURNING i.run_id, i.idx, i.kind, i.wref, i.input, i.custom_data, i.iteration,
    i.generation, i.attempt, i.last_position, i.parent_idx, i.epoch, i.flow_key),
started AS (
  UPDATE runs SET status = CASE WHEN status = 'QUEUED' THEN 'RUNNING' ELSE status END,
    started_at = coalesce(started_at, runyard_now()),
    deadline_at = coalesce(deadline_at, runyard_now() + timeout_s),
    waiting_for = NULL, updated_at = runyard_now()
  WHERE id = ANY(ARRAY(SELECT DISTINCT run_id FROM claimed ORDER BY 1))
    AND (status = 'QUEUED' OR started_at IS NULL OR waiting_for IS NOT NULL
         OR (deadline_at IS NULL AND timeout_s IS NOT NULL))
  RETURNING id, deadline_at)
SELECT claimed.*, coalesce(s.deadline_at, r.deadline_at) AS deadline_at, r.sync_mode,
  r.max_results, r.options, r.error, r.item_count, r.timeout_s
FROM claimed JOIN runs r ON r.id = claimed.run_id LEFT JOIN started s ON s.id = claimed.run_id;

-- name: claim_keyed
-- claim, for the ready items of one flow-control key (items_ready_keyed); the caller
-- has taken the key's capacity.
WITH c AS (
  SELECT x.run_id, x.idx FROM unnest(%(wrefs)s::text[]) AS w(wref)
  CROSS JOIN LATERAL (
    SELECT i.run_id, i.idx, i.priority, i.due_at FROM items i
    WHERE i.wref = w.wref AND i.flow_key = %(flow_key)s AND i.parked = 0
      AND i.owner IS NULL AND i.state IN ('queued', 'processing') AND i.kind <> 'map'
      AND i.flow_key IS NOT NULL
    ORDER BY i.priority DESC, i.due_at LIMIT %(limit)s
    FOR UPDATE OF i SKIP LOCKED) AS x
  ORDER BY x.priority DESC, x.due_at LIMIT %(limit)s),
claimed AS (
  UPDATE items i SET owner = %(owner)s, epoch = i.epoch + 1,
    lease_expires_at = runyard_now() + %(lease_s)s, state = 'processing',
    attempt = i.attempt + 1, started_at = coalesce(i.started_at, runyard_now()),
    waiting_for = NULL
  FROM c WHERE i.run_id = c.run_id AND i.idx = c.idx
  RETURNING i.run_id, i.idx, i.kind, i.wref, i.input, i.custom_data, i.iteration,
    i.generation, i.attempt, i.last_position, i.parent_idx, i.epoch, i.flow_key),
started AS (
  UPDATE runs SET status = CASE WHEN status = 'QUEUED' THEN 'RUNNING' ELSE status END,
    started_at = coalesce(started_at, runyard_now()),
    deadline_at = coalesce(deadline_at, runyard_now() + timeout_s),
    waiting_for = NULL, updated_at = runyard_now()
  WHERE id = ANY(ARRAY(SELECT DISTINCT run_id FROM claimed ORDER BY 1))
    AND (status = 'QUEUED' OR started_at IS NULL OR waiting_for IS NOT NULL
         OR (deadline_at IS NULL AND timeout_s IS NOT NULL))
  RETURNING id, deadline_at)
SELECT claimed.*, coalesce(s.deadline_at, r.deadline_at) AS deadline_at, r.sync_mode,
  r.max_results, r.options, r.error, r.item_count, r.timeout_s
FROM claimed JOIN runs r ON r.id = claimed.run_id LEFT JOIN started s ON s.id = claimed.run_id;

-- name: due_flow_keys
-- The flow-control keys with ready items of these workflows: a skip from key to key
-- through items_ready_keyed (one probe per key found), not a read of every keyed item.
WITH RECURSIVE k(wref, flow_key) AS (
  SELECT w.wref, (SELECT i.flow_key FROM items i
                  WHERE i.wref = w.wref AND i.flow_key IS NOT NULL AND i.parked = 0
                    AND i.owner IS NULL AND i.state IN ('queued', 'processing')
                    AND i.kind <> 'map'
                  ORDER BY i.flow_key LIMIT 1)
  FROM unnest(%(wrefs)s::text[]) AS w(wref)
  UNION ALL
  SELECT k.wref, (SELECT i.flow_key FROM items i
                  WHERE i.wref = k.wref AND i.flow_key > k.flow_key AND i.parked = 0
                    AND i.owner IS NULL AND i.state IN ('queued', 'processing')
                    AND i.kind <> 'map' AND i.flow_key IS NOT NULL
                  ORDER BY i.flow_key LIMIT 1)
  FROM k WHERE k.flow_key IS NOT NULL)
SELECT DISTINCT flow_key FROM k WHERE flow_key IS NOT NULL LIMIT %(limit)s;

-- name: has_due_work
SELECT 1 WHERE EXISTS (
    SELECT 1 FROM items WHERE wref = ANY(%(wrefs)s::text[]) AND flow_key IS NULL
      AND parked = 0 AND owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map')
  OR EXISTS (
    SELECT 1 FROM items WHERE wref = ANY(%(wrefs)s::text[]) AND flow_key IS NOT NULL
      AND parked = 0 AND owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map')
  OR EXISTS (
    SELECT 1 FROM items WHERE parked = 1 AND owner IS NULL
      AND state IN ('queued', 'processing') AND kind <> 'map'
      AND due_at <= (SELECT runyard_now()))
  OR EXISTS (SELECT 1 FROM runs
             WHERE status = 'SCHEDULED' AND not_before <= (SELECT runyard_now()));

-- name: item_history
SELECT * FROM steps WHERE run_id = %(run_id)s AND item_idx = %(idx)s AND iteration = %(iteration)s
ORDER BY position;

-- name: item_failed_attempts
-- By position, the failed attempts an execution continues counting from, and how many of
-- them were rate limited: every attempt of the workflow's body (position 0), a step's
-- since the body last failed (each attempt of the body gives its steps their retries);
-- and a step's failed attempts in all (in every attempt of the body), for its true count.
SELECT a.position,
  count(*) FILTER (WHERE a.position = 0 OR a.id > l.last0) AS n,
  count(*) FILTER (WHERE (a.position = 0 OR a.id > l.last0)
                   AND a.error::json ->> 'code' = 'rate_limited') AS limited,
  count(*) AS total
FROM attempts a, (
  SELECT coalesce(max(id), 0) AS last0 FROM attempts
  WHERE run_id = %(run_id)s AND item_idx = %(idx)s AND iteration = %(iteration)s
    AND generation = %(generation)s AND position = 0) l
WHERE a.run_id = %(run_id)s AND a.item_idx = %(idx)s AND a.iteration = %(iteration)s
  AND a.generation = %(generation)s
GROUP BY a.position;

-- name: previous_sync_state
SELECT state FROM sync_states
WHERE run_id = %(run_id)s AND item_idx = %(idx)s AND iteration < %(iteration)s
ORDER BY iteration DESC LIMIT 1;

-- name: lock_flow_key
SELECT parallelism, rate, period_s FROM flow_keys WHERE key = %(key)s FOR UPDATE;

-- name: flow_active
SELECT (SELECT count(*) FROM items
        WHERE flow_key = %(key)s AND owner IS NOT NULL AND lease_expires_at > runyard_now())
     + (SELECT count(*) FROM flow_slots WHERE key = %(key)s AND expires_at > runyard_now()) AS n;

-- name: flow_recent
SELECT count(*) AS n FROM flow_starts
WHERE key = %(key)s AND at > (SELECT runyard_now()) - %(period_s)s;

-- name: flow_retry_in
SELECT (SELECT min(at) FROM flow_starts WHERE key = k.key AND at > (SELECT runyard_now()) - k.period_s)
       + k.period_s - runyard_now() AS wait_s
FROM flow_keys k WHERE k.key = %(key)s;

-- name: insert_flow_start
INSERT INTO flow_starts (key, at) VALUES (%(key)s, runyard_now());

-- name: insert_flow_slot
INSERT INTO flow_slots (key, holder, owner, expires_at)
VALUES (%(key)s, %(holder)s, %(owner)s, runyard_now() + %(ttl_s)s)
ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at;

-- name: delete_flow_slot
DELETE FROM flow_slots WHERE key = %(key)s AND holder = %(holder)s;

-- name: extend_flow_slots
UPDATE flow_slots SET expires_at = runyard_now() + %(lease_s)s WHERE owner = %(owner)s;

-- name: expire_flow_slots
DELETE FROM flow_slots WHERE expires_at < runyard_now();

-- name: trim_flow_starts
DELETE FROM flow_starts
WHERE at < runyard_now() - 1 - coalesce((SELECT period_s FROM flow_keys k WHERE k.key = flow_starts.key), 0);

-- name: fence
UPDATE items SET last_position = GREATEST(last_position, %(position)s)
WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s
RETURNING (SELECT status FROM runs WHERE id = %(run_id)s) AS status;

-- name: upsert_step
INSERT INTO steps (run_id, item_idx, iteration, position, name, kind, status, result, error,
  attempts, started_at)
SELECT %(run_id)s, %(idx)s, %(iteration)s, %(position)s, %(name)s, %(kind)s, %(status)s, %(result)s, %(error)s, %(attempts)s, %(started_at)s
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s)
ON CONFLICT (run_id, item_idx, iteration, position) DO UPDATE SET status = excluded.status,
  result = excluded.result, error = excluded.error, attempts = excluded.attempts,
  completed_at = runyard_now()
WHERE steps.status = 'waiting' AND excluded.status <> 'waiting';

-- name: insert_output
-- (With a key, in an incremental run of a schedule: not if an earlier fire's run
-- emitted that key: a record is delivered once across a schedule's fires; a keyed
-- output carries its run's schedule_id, set by a trigger, index outputs_schedule_key.)
INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
SELECT %(run_id)s, %(idx)s, %(iteration)s, %(position)s, %(key)s, %(data)s
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s)
  AND (%(key)s::text IS NULL
    OR (SELECT sync_mode FROM runs WHERE id = %(run_id)s) IS DISTINCT FROM 'incremental'
    OR NOT EXISTS (SELECT 1 FROM outputs o
    JOIN runs me ON me.id = %(run_id)s AND me.sync_mode = 'incremental'
    WHERE o.schedule_id = me.schedule_id AND o.key = %(key)s AND o.run_id <> me.id))
ON CONFLICT DO NOTHING;

-- name: insert_credit
-- A trigger adds the amount to the run's credits when (and only when) the row is new.
INSERT INTO credits (run_id, item_idx, iteration, position, workflow, action, amount)
SELECT r.id, %(idx)s, %(iteration)s, %(position)s, r.workflow, %(action)s, %(amount)s
FROM runs r WHERE r.id = %(run_id)s AND EXISTS (SELECT 1 FROM items WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s)
ON CONFLICT DO NOTHING;

-- name: save_sync_state
INSERT INTO sync_states (run_id, item_idx, iteration, state)
SELECT %(run_id)s, %(idx)s, %(iteration)s, %(state)s
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s)
ON CONFLICT (run_id, item_idx, iteration) DO UPDATE SET state = excluded.state,
  saved_at = runyard_now();

-- name: insert_attempt
INSERT INTO attempts (run_id, item_idx, iteration, generation, position, name, attempt,
  started_at, error)
VALUES (%(run_id)s, %(idx)s, %(iteration)s, %(generation)s, %(position)s, %(name)s, %(attempt)s, %(started_at)s,
  %(error)s);

-- name: lock_run
SELECT status FROM runs WHERE id = %(run_id)s FOR UPDATE;

-- name: finish_item
UPDATE items SET state = %(state)s, result = %(result)s, error = %(error)s, owner = NULL,
  lease_expires_at = NULL, finished_at = runyard_now(), waiting_for = NULL
WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s;

-- name: finalize_run
-- (How the run ends: runyard_run_outcome, migration 0006.)
UPDATE runs SET
  (status, result, error, progress) = (
    SELECT * FROM runyard_run_outcome(c.n, c.ok, c.failed, c.discarded, runs.input_count,
                                      c.first_result, c.first_error, c.results,
                                      runs.progress)),
  finished_at = runyard_now(), updated_at = runyard_now(), waiting_for = NULL
FROM (SELECT count(*) AS n,
        count(*) FILTER (WHERE state = 'completed') AS ok,
        count(*) FILTER (WHERE state = 'failed') AS failed,
        count(*) FILTER (WHERE state = 'discarded') AS discarded,
        count(*) FILTER (WHERE state IN ('queued', 'processing')) AS open,
        max(CASE WHEN idx = 0 THEN result END) AS first_result,
        max(CASE WHEN idx = 0 THEN error END) AS first_error,
        '[' || string_agg(coalesce(result, 'null'), ',' ORDER BY idx) || ']' AS results
      FROM items WHERE run_id = %(run_id)s AND kind = 'input'
        AND NOT EXISTS (SELECT 1 FROM items o WHERE o.run_id = %(run_id)s AND o.kind = 'input'
                        AND o.state IN ('queued', 'processing'))) AS c
WHERE runs.id = %(run_id)s AND runs.status IN ('RUNNING', 'QUEUED', 'PAUSED') AND c.open = 0
  AND c.n > 0
RETURNING runs.status;

-- name: insert_hook_item
INSERT INTO items (run_id, idx, kind, wref, input, state, priority, due_at)
SELECT r.id, -1 - (SELECT count(*) FROM items h WHERE h.run_id = r.id AND h.kind = 'hook'),
  'hook', r.workflow || '@' || r.workflow_version, r.error, 'queued', r.priority, runyard_now()
FROM runs r
WHERE r.id = %(run_id)s AND r.has_on_failure AND r.status IN ('FAILED', 'CRASHED')
  AND NOT EXISTS (SELECT 1 FROM items h WHERE h.run_id = r.id AND h.kind = 'hook'
                  AND h.state IN ('queued', 'processing'));

-- name: suspend_item
-- Parked until due_at (or, when its run was paused meanwhile, until resumed).
UPDATE items SET owner = NULL, lease_expires_at = NULL, due_at = %(due_at)s,
  waiting_for = %(waiting_for)s,
  parked = CASE WHEN parked = 2 THEN 2 WHEN %(due_at)s > runyard_now() THEN 1 ELSE 0 END
WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s;

-- name: set_run_waiting
UPDATE runs SET waiting_for = %(waiting_for)s, updated_at = runyard_now()
WHERE id = %(run_id)s AND EXISTS (SELECT 1 FROM items WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s);

-- name: lock_event
SELECT pg_advisory_xact_lock(hashtextextended(%(event_id)s, 7207413551));

-- name: first_event
SELECT event_id, data FROM events
WHERE event_id = ANY(%(event_ids)s::text[]) AND created_at >= %(since)s
ORDER BY id LIMIT 1;

-- name: insert_event
INSERT INTO events (event_id, data) VALUES (%(event_id)s, %(data)s);

-- name: insert_waiter
INSERT INTO waiters (event_id, run_id, item_idx, position, since, deadline)
VALUES (%(event_id)s, %(run_id)s, %(idx)s, %(position)s, %(since)s, %(deadline)s)
ON CONFLICT (event_id, run_id, item_idx) DO UPDATE SET position = excluded.position,
  since = excluded.since, deadline = excluded.deadline;

-- name: wake_waiters
UPDATE items SET due_at = runyard_now(), parked = CASE WHEN parked = 2 THEN 2 ELSE 0 END
WHERE owner IS NULL AND (run_id, idx) IN (
  SELECT run_id, item_idx FROM waiters WHERE event_id = %(event_id)s)
RETURNING run_id;

-- name: delete_event_waiters
DELETE FROM waiters WHERE (run_id, item_idx) IN (
  SELECT run_id, item_idx FROM waiters WHERE event_id = %(event_id)s);

-- name: delete_item_waiters
DELETE FROM waiters WHERE run_id = %(run_id)s AND item_idx = %(idx)s;

-- name: delete_run_waiters
DELETE FROM waiters WHERE run_id = %(run_id)s;

-- name: insert_map_item
INSERT INTO items (run_id, idx, kind, parent_idx, name, wref, input, state, priority,
  iteration, due_at)
SELECT p.run_id, %(idx)s, 'map', p.idx, %(name)s, p.wref, %(input)s, 'queued', p.priority,
  p.iteration, runyard_now()
FROM items p WHERE p.run_id = %(run_id)s AND p.idx = %(parent_idx)s
ON CONFLICT DO NOTHING;

-- name: reserve_items
UPDATE runs SET item_count = item_count + %(n)s WHERE id = %(run_id)s
RETURNING item_count - %(n)s AS base;

-- name: set_element
UPDATE items SET state = %(state)s, result = %(result)s, error = %(error)s,
  started_at = coalesce(started_at, runyard_now()),
  finished_at = CASE WHEN %(state)s IN ('completed', 'failed') THEN runyard_now() END
WHERE run_id = %(run_id)s AND idx = %(idx)s AND state <> 'completed';

-- name: set_progress
UPDATE runs SET progress = %(progress)s, progress_message = %(message)s, updated_at = runyard_now()
WHERE id = %(run_id)s;

-- name: insert_log
-- Fenced like a checkpoint: a worker that lost the item writes no line.
INSERT INTO logs (run_id, item_idx, iteration, attempt, level, message)
SELECT %(run_id)s, %(idx)s, %(iteration)s, %(attempt)s, %(level)s, %(message)s
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s)
RETURNING id;

-- name: extend_lease
UPDATE items SET lease_expires_at = runyard_now() + %(lease_s)s
WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s
RETURNING epoch;

-- name: stopping_runs
SELECT id, status FROM runs
WHERE id = ANY(%(ids)s::text[]) AND status NOT IN ('QUEUED', 'RUNNING');

-- name: expire_leases
-- A recovered item waits a jittered backoff that grows with its run's recoveries, so
-- the items of a worker that died are not all claimed together again (one of them may
-- be what killed it).
UPDATE items SET owner = NULL, lease_expires_at = NULL, epoch = epoch + 1,
  parked = CASE WHEN parked = 2 THEN 2 ELSE 1 END,
  due_at = runyard_now() + random() * least(30.0, 0.25 * power(2, least(
    (SELECT recovery_attempts FROM runs WHERE id = items.run_id), 7)))
WHERE (run_id, idx) IN (SELECT run_id, idx FROM items
                        WHERE owner IS NOT NULL AND lease_expires_at < (SELECT runyard_now())
                        LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING run_id, idx, kind;

-- name: count_recoveries
UPDATE runs SET recovery_attempts = recovery_attempts + 1, updated_at = runyard_now()
WHERE id = ANY(%(ids)s::text[]) AND status IN ('QUEUED', 'RUNNING', 'PAUSED');

-- name: runs_over_recovery
SELECT id, recovery_attempts, max_recovery_attempts FROM runs
WHERE id = ANY(%(ids)s::text[]) AND status IN ('QUEUED', 'RUNNING', 'PAUSED')
  AND recovery_attempts > max_recovery_attempts;

-- name: run_traces
-- What the run spans of runs this process just ended (a cancel, a recovery's crash) are
-- recorded from, where it traces: a batch of runs at a time.
SELECT id, workflow, options, error FROM runs
WHERE id = ANY(%(ids)s::text[]);

-- name: crash_run
UPDATE runs SET status = 'CRASHED', error = %(error)s, finished_at = runyard_now(),
  updated_at = runyard_now(), waiting_for = NULL
WHERE id = %(run_id)s;

-- name: crash_items
UPDATE items SET state = 'failed', error = %(error)s, owner = NULL, lease_expires_at = NULL,
  finished_at = runyard_now(), waiting_for = NULL
WHERE run_id = %(run_id)s AND kind IN ('input', 'map') AND state IN ('queued', 'processing');

-- name: select_runs_for_action
-- The runs a client action (cancel, pause, resume, continue) applies to, locked in id
-- order (as every group locks them) for the rest of the transaction. A run whose outcome
-- another transaction is writing is waited for, and its status tested again as that
-- transaction left it: a run that ended meanwhile is not selected, so a cancel never
-- overwrites a SUCCEEDED run.
SELECT id FROM runs
WHERE status = ANY(%(statuses)s::text[])
  AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(prefix)s::text IS NULL OR id LIKE %(prefix)s ESCAPE '\')
  AND (%(url_prefix)s::text IS NULL OR (workflow = 'http'
    AND starts_with(options::jsonb ->> 'target_url', %(url_prefix)s)))
  AND (%(task_id)s::text IS NULL OR task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR schedule_id = %(schedule_id)s)
ORDER BY id FOR UPDATE;

-- name: cancel_run
UPDATE runs SET status = 'CANCELED', finished_at = runyard_now(), updated_at = runyard_now(),
  waiting_for = NULL,
  error = json_build_object('code', 'canceled', 'message', 'the run was canceled')::text
WHERE id = %(run_id)s;

-- name: cancel_items
UPDATE items SET state = 'failed', owner = NULL, lease_expires_at = NULL, epoch = epoch + 1,
  error = json_build_object('code', 'canceled', 'message', 'the run was canceled')::text,
  finished_at = runyard_now(), waiting_for = NULL
WHERE run_id = %(run_id)s AND kind IN ('input', 'map') AND state IN ('queued', 'processing');

-- name: pause_run
UPDATE runs SET status = 'PAUSED', updated_at = runyard_now() WHERE id = %(run_id)s;

-- name: hold_items
-- A paused run's inputs leave the claimable set (those a worker runs now too: it hands
-- them back at its next step, and they stay held).
UPDATE items SET parked = 2
WHERE run_id = %(run_id)s AND kind = 'input' AND state IN ('queued', 'processing');

-- name: release_items
-- Resumed: a held input is ready, or parked until its due time (a sleep).
UPDATE items SET parked = CASE WHEN due_at > runyard_now() THEN 1 ELSE 0 END
WHERE run_id = %(run_id)s AND parked = 2;

-- name: delete_failed_steps
DELETE FROM steps WHERE run_id = %(run_id)s AND status = 'failed'
  AND iteration = (SELECT iteration FROM runs WHERE id = %(run_id)s);

-- name: resume_items
UPDATE items SET state = 'queued', error = NULL, generation = generation + 1,
  due_at = runyard_now(), finished_at = NULL, waiting_for = NULL, parked = 0
WHERE run_id = %(run_id)s AND state = 'failed' AND kind IN ('input', 'map');

-- name: resume_run
-- RUNNING while a worker executes one of its items, or while one is suspended until
-- later in a sleep, an event wait or a retry's backoff (release_items parked it again):
-- the run goes back to its wait, as it was before the pause (waiting_for kept). QUEUED
-- when what is left is due now.
UPDATE runs SET
  status = CASE WHEN EXISTS (SELECT 1 FROM items WHERE run_id = runs.id
                               AND (owner IS NOT NULL
                                    OR (parked = 1 AND waiting_for IS NOT NULL)))
                THEN 'RUNNING' ELSE 'QUEUED' END,
  deadline_at = CASE WHEN status = 'PAUSED' THEN deadline_at END,
  error = NULL, result = NULL, finished_at = NULL, recovery_attempts = 0,
  updated_at = runyard_now()
WHERE id = %(run_id)s;

-- name: drop_unfinished_sync_states
-- Before a continue: the state an input saved in an iteration it did not complete
-- (failed, canceled) is not the next iteration's: a failed iteration does not
-- advance the sync.
DELETE FROM sync_states WHERE run_id = %(run_id)s
  AND iteration = (SELECT iteration FROM runs WHERE id = %(run_id)s)
  AND item_idx IN (SELECT idx FROM items WHERE run_id = %(run_id)s AND kind = 'input'
    AND state <> 'completed');

-- name: continue_items
UPDATE items SET state = 'queued', result = NULL, error = NULL, iteration = iteration + 1,
  generation = 0, attempt = 0, last_position = 0, due_at = runyard_now(), owner = NULL,
  lease_expires_at = NULL, epoch = epoch + 1, started_at = NULL, finished_at = NULL,
  waiting_for = NULL, parked = 0
WHERE run_id = %(run_id)s AND kind = 'input' AND state <> 'discarded';

-- name: continue_run
UPDATE runs SET status = 'QUEUED', iteration = iteration + 1, result = NULL, error = NULL,
  finished_at = NULL, deadline_at = NULL, recovery_attempts = 0, progress = NULL,
  progress_message = NULL, output_count = 0, truncated = FALSE,
  updated_at = runyard_now()
WHERE id = %(run_id)s;

-- name: last_step_position
SELECT max(position) AS position FROM steps
WHERE run_id = %(run_id)s AND iteration = %(iteration)s;

-- name: fork_run
-- No row when new_id exists: a fork that raced another with the same id returns that
-- run (the insert waits for the other's commit, then does nothing).
INSERT INTO runs (id, workflow, workflow_version, kind, mode, status, priority, input_count,
  item_count, task_id, parent_id, fork_position, sync_mode, max_results, options, flow_key,
  timeout_s, max_recovery_attempts, has_on_failure)
SELECT %(new_id)s, workflow, %(version)s, kind, mode, 'QUEUED', priority, input_count,
  input_count, task_id, id, %(position)s, sync_mode, max_results, %(options)s, flow_key,
  timeout_s, max_recovery_attempts, has_on_failure
FROM runs WHERE id = %(source_id)s
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: fork_items
INSERT INTO items (run_id, idx, kind, wref, input, custom_data, state, error, priority,
  flow_key, last_position, due_at)
SELECT %(new_id)s, idx, 'input', %(wref)s, coalesce(%(input)s::text, input), custom_data,
  CASE WHEN state = 'discarded' THEN 'discarded' ELSE 'queued' END,
  CASE WHEN state = 'discarded' THEN error END, priority, flow_key, %(position)s, runyard_now()
FROM items WHERE run_id = %(source_id)s AND kind = 'input';

-- name: fork_steps
INSERT INTO steps (run_id, item_idx, iteration, position, name, kind, status, result, error,
  attempts, started_at, completed_at)
SELECT %(new_id)s, item_idx, 1, position, name, kind, status, result, error, attempts,
  started_at, completed_at
FROM steps
WHERE run_id = %(source_id)s AND iteration = %(iteration)s AND position < %(position)s
  AND status = 'completed';

-- name: fork_outputs
INSERT INTO outputs (run_id, item_idx, iteration, position, key, data, created_at)
SELECT %(new_id)s, item_idx, 1, position, key, data, created_at
FROM outputs
WHERE run_id = %(source_id)s AND iteration = %(iteration)s AND position < %(position)s
ORDER BY id;

-- name: get_run
-- With the run's input when it has exactly one (its item 0).
SELECT r.*, (SELECT i.input FROM items i WHERE i.run_id = r.id AND i.idx = 0
              AND r.input_count = 1) AS input
FROM runs r WHERE r.id = %(id)s;

-- name: run_statuses
SELECT id, status FROM runs WHERE id = ANY(%(ids)s::text[]);

-- name: list_runs_desc
-- Runs lists walk an index in list order and stop after the page (runs_created here; by
-- status and by workflow below, one walk per status, merged): a page costs what it
-- holds, not what the history holds. The time bound and the cursor are one row
-- comparison, which an index range serves whatever the parameters (not "param IS NULL
-- OR ...", which a prepared statement's generic plan cannot use).
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND (r.created_at, r.id) < (least(coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(created_before)s::double precision, 'Infinity')),
    CASE WHEN coalesce(%(after_at)s::double precision, 'Infinity') < coalesce(%(created_before)s::double precision, 'Infinity') THEN %(after_id)s::text ELSE '' END)
ORDER BY r.created_at DESC, r.id DESC LIMIT %(limit)s;

-- name: list_runs_asc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (r.created_at, r.id) > (greatest(coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(created_after)s::double precision, '-Infinity')),
    CASE WHEN coalesce(%(after_at)s::double precision, '-Infinity') > coalesce(%(created_after)s::double precision, '-Infinity') THEN %(after_id)s::text ELSE '' END)
ORDER BY r.created_at ASC, r.id ASC LIMIT %(limit)s;

-- Runs lists sorted by status, started_at or finished_at (created_at: list_runs_*)
-- walk an index on the sort key in list order and stop after the page, as
-- list_runs_* do (runs_status; runs_started_key and runs_finished_key, migration
-- 0011, on the time with one not yet set as infinity: last ascending, first
-- descending). The key, created_at and id make the order total, and the cursor
-- is one row comparison on them, which the index range serves.
-- name: runs_sorted_by_status_desc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (r.status, r.created_at, r.id) < (coalesce(%(after_text)s::text, '~'),
    coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(after_id)s::text, ''))
ORDER BY r.status DESC, r.created_at DESC, r.id DESC
LIMIT %(limit)s::int;

-- name: runs_sorted_by_status_asc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (r.status, r.created_at, r.id) > (coalesce(%(after_text)s::text, ''),
    coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(after_id)s::text, ''))
ORDER BY r.status ASC, r.created_at ASC, r.id ASC
LIMIT %(limit)s::int;

-- name: runs_sorted_by_started_desc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (coalesce(r.started_at, 'Infinity'), r.created_at, r.id) < (coalesce(%(after_num)s::double precision, 'Infinity'),
    coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(after_id)s::text, ''))
ORDER BY coalesce(r.started_at, 'Infinity') DESC, r.created_at DESC, r.id DESC
LIMIT %(limit)s::int;

-- name: runs_sorted_by_started_asc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (coalesce(r.started_at, 'Infinity'), r.created_at, r.id) > (coalesce(%(after_num)s::double precision, '-Infinity'),
    coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(after_id)s::text, ''))
ORDER BY coalesce(r.started_at, 'Infinity') ASC, r.created_at ASC, r.id ASC
LIMIT %(limit)s::int;

-- name: runs_sorted_by_finished_desc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (coalesce(r.finished_at, 'Infinity'), r.created_at, r.id) < (coalesce(%(after_num)s::double precision, 'Infinity'),
    coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(after_id)s::text, ''))
ORDER BY coalesce(r.finished_at, 'Infinity') DESC, r.created_at DESC, r.id DESC
LIMIT %(limit)s::int;

-- name: runs_sorted_by_finished_asc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (coalesce(r.finished_at, 'Infinity'), r.created_at, r.id) > (coalesce(%(after_num)s::double precision, '-Infinity'),
    coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(after_id)s::text, ''))
ORDER BY coalesce(r.finished_at, 'Infinity') ASC, r.created_at ASC, r.id ASC
LIMIT %(limit)s::int;

-- name: list_runs_by_status_desc
-- One walk of runs_status per status asked for, merged. (The status is bounded by a range
-- and leads the walk's order, so that no plan can walk another index and filter on it:
-- an equality would make it a constant, and a plan that believed every run had that
-- status walked all of runs_created for a status no run had.)
SELECT x.* FROM unnest(%(statuses)s::text[]) AS s(status)
CROSS JOIN LATERAL (
  SELECT r.* FROM runs r
  WHERE r.status >= s.status AND r.status <= s.status
    AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
    AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
    AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
    AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
    AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
    AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
    AND (r.created_at, r.id) < (least(coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(created_before)s::double precision, 'Infinity')),
      CASE WHEN coalesce(%(after_at)s::double precision, 'Infinity') < coalesce(%(created_before)s::double precision, 'Infinity') THEN %(after_id)s::text ELSE '' END)
  ORDER BY r.status DESC, r.created_at DESC, r.id DESC LIMIT %(limit)s) AS x
ORDER BY x.created_at DESC, x.id DESC LIMIT %(limit)s;

-- name: list_runs_by_status_asc
SELECT x.* FROM unnest(%(statuses)s::text[]) AS s(status)
CROSS JOIN LATERAL (
  SELECT r.* FROM runs r
  WHERE r.status >= s.status AND r.status <= s.status
    AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
    AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
    AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
    AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
    AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
    AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
    AND (r.created_at, r.id) > (greatest(coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(created_after)s::double precision, '-Infinity')),
      CASE WHEN coalesce(%(after_at)s::double precision, '-Infinity') > coalesce(%(created_after)s::double precision, '-Infinity') THEN %(after_id)s::text ELSE '' END)
  ORDER BY r.status ASC, r.created_at ASC, r.id ASC LIMIT %(limit)s) AS x
ORDER BY x.created_at ASC, x.id ASC LIMIT %(limit)s;

-- name: list_runs_by_workflow_desc
-- One walk of runs_workflow (workflow, status, ...) per status asked for (every
-- status when none is), merged. (Workflow and status are bounded together by a range of
-- that index, and lead the order: no plan can walk runs_status and filter on the workflow,
-- which read every run of a status when the workflow had few of them.)
SELECT x.* FROM unnest(%(statuses)s::text[]) AS s(status)
CROSS JOIN LATERAL (
  SELECT r.* FROM runs r
  WHERE (r.workflow, r.status) >= (%(workflow)s::text, s.status)
    AND (r.workflow, r.status) <= (%(workflow)s::text, s.status)
    AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
    AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
    AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
    AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
    AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
    AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
    AND (r.created_at, r.id) < (least(coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(created_before)s::double precision, 'Infinity')),
      CASE WHEN coalesce(%(after_at)s::double precision, 'Infinity') < coalesce(%(created_before)s::double precision, 'Infinity') THEN %(after_id)s::text ELSE '' END)
  ORDER BY r.workflow DESC, r.status DESC, r.created_at DESC, r.id DESC LIMIT %(limit)s) AS x
ORDER BY x.created_at DESC, x.id DESC LIMIT %(limit)s;

-- name: list_runs_by_workflow_asc
SELECT x.* FROM unnest(%(statuses)s::text[]) AS s(status)
CROSS JOIN LATERAL (
  SELECT r.* FROM runs r
  WHERE (r.workflow, r.status) >= (%(workflow)s::text, s.status)
    AND (r.workflow, r.status) <= (%(workflow)s::text, s.status)
    AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
    AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
    AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
    AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
    AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
    AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
    AND (r.created_at, r.id) > (greatest(coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(created_after)s::double precision, '-Infinity')),
      CASE WHEN coalesce(%(after_at)s::double precision, '-Infinity') > coalesce(%(created_after)s::double precision, '-Infinity') THEN %(after_id)s::text ELSE '' END)
  ORDER BY r.workflow ASC, r.status ASC, r.created_at ASC, r.id ASC LIMIT %(limit)s) AS x
ORDER BY x.created_at ASC, x.id ASC LIMIT %(limit)s;

-- name: list_items
SELECT * FROM items
WHERE run_id = %(run_id)s AND kind = ANY(%(kinds)s::text[])
  AND (%(state)s::text IS NULL OR state = %(state)s)
ORDER BY idx LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_steps
SELECT * FROM steps WHERE run_id = %(run_id)s AND (%(iteration)s::int IS NULL OR iteration = %(iteration)s)
ORDER BY iteration, item_idx, position;

-- name: list_attempts
-- Each failed attempt with the attempt of the workflow's body it belongs to (1 + the
-- body's attempts that failed before it, in the item's iteration and generation; a body
-- attempt's own number for position 0).
SELECT a.*, 1 + (SELECT count(*) FROM attempts b
                 WHERE b.run_id = a.run_id AND b.item_idx = a.item_idx
                   AND b.iteration = a.iteration AND b.generation = a.generation
                   AND b.position = 0 AND b.id < a.id) AS workflow_attempt
FROM attempts a WHERE a.run_id = %(run_id)s ORDER BY a.id;

-- name: list_outputs
SELECT * FROM outputs
WHERE run_id = %(run_id)s AND id > %(after_id)s AND (%(iteration)s::int IS NULL OR iteration = %(iteration)s)
ORDER BY id LIMIT %(limit)s;

-- name: list_transitions
SELECT * FROM run_transitions WHERE run_id = %(run_id)s ORDER BY id;

-- name: list_waiters
SELECT * FROM waiters WHERE event_id = %(event_id)s ORDER BY created_at;

-- name: list_logs
SELECT * FROM logs WHERE run_id = %(run_id)s AND id > %(after_id)s ORDER BY id LIMIT %(limit)s;

-- name: lock_runs
-- The runs of several outcomes, locked in id order (as every group locks them).
SELECT id FROM runs WHERE id = ANY(%(run_ids)s::text[]) ORDER BY id FOR UPDATE;

-- name: finish_items_steps
-- Items' outcomes in one statement (after lock_runs), each a row of a JSON parameter and
-- each last checkpoint a row of another: fence and finish each item, record its last
-- checkpoints, finalize a run whose last open input this finished (as finalize_run:
-- runyard_run_outcome), and give a run this failed its on_failure item (as
-- insert_hook_item). A run's inputs are its items as they
-- were before this statement, but those it finishes, taken as it leaves them; they are
-- read only for a run left with no open input (one probe of items_open_inputs per run:
-- an outcome costs the same in a run of one input and of 100,000). One row per outcome
-- written, numbered as given (a fenced one has none).
WITH o AS (
  SELECT * FROM json_to_recordset(%(outcomes)s::json) AS o(n int, run_id text, idx int,
    owner text, epoch int, iteration int, position int, state text, result text, error text)),
f AS (
  UPDATE items i SET state = o.state, result = o.result, error = o.error, owner = NULL,
    lease_expires_at = NULL, finished_at = runyard_now(), waiting_for = NULL,
    last_position = GREATEST(i.last_position, o.position)
  FROM o
  WHERE i.run_id = o.run_id AND i.idx = o.idx AND i.owner = o.owner AND i.epoch = o.epoch
  RETURNING o.n, i.run_id, i.idx, i.kind, i.state, i.result, i.error, o.iteration),
s AS (
  INSERT INTO steps (run_id, item_idx, iteration, position, name, kind, status, result, error,
    attempts, started_at)
  SELECT f.run_id, f.idx, f.iteration, c.position, c.name, c.kind, c.status, c.result,
    c.error, c.attempts, c.started_at
  FROM f JOIN json_to_recordset(%(checkpoints)s::json)
       AS c(run_id text, idx int, position int, name text, kind text, status text,
            result text, error text, attempts int, started_at double precision)
    ON c.run_id = f.run_id AND c.idx = f.idx
  ON CONFLICT (run_id, item_idx, iteration, position) DO UPDATE SET status = excluded.status,
    result = excluded.result, error = excluded.error, attempts = excluded.attempts,
    completed_at = runyard_now()
  WHERE steps.status = 'waiting' AND excluded.status <> 'waiting'),
ended AS (
  -- (A run's first %(probe)s open inputs, more than this finishes: were it written as a
  -- join, a planner without statistics reads every open input of every run per row.)
  SELECT DISTINCT f.run_id FROM f
  WHERE f.kind = 'input' AND NOT EXISTS (
    SELECT 1 FROM (SELECT i.run_id, i.idx FROM items i
                   WHERE i.run_id = f.run_id AND i.kind = 'input'
                     AND i.state IN ('queued', 'processing')
                   LIMIT %(probe)s) AS open
    WHERE NOT EXISTS (SELECT 1 FROM f AS g WHERE g.run_id = open.run_id AND g.idx = open.idx))),
inputs AS (
  SELECT i.run_id, i.idx, i.state, i.result, i.error FROM items i
  WHERE i.run_id IN (SELECT run_id FROM ended) AND i.kind = 'input'
    AND NOT EXISTS (SELECT 1 FROM f WHERE f.run_id = i.run_id AND f.idx = i.idx)
  UNION ALL
  SELECT run_id, idx, state, result, error FROM f
  WHERE kind = 'input' AND run_id IN (SELECT run_id FROM ended)),
c AS (
  SELECT run_id, count(*) AS n,
    count(*) FILTER (WHERE state = 'completed') AS ok,
    count(*) FILTER (WHERE state = 'failed') AS failed,
    count(*) FILTER (WHERE state = 'discarded') AS discarded,
    count(*) FILTER (WHERE state IN ('queued', 'processing')) AS open,
    max(CASE WHEN idx = 0 THEN result END) AS first_result,
    max(CASE WHEN idx = 0 THEN error END) AS first_error,
    '[' || string_agg(coalesce(result, 'null'), ',' ORDER BY idx) || ']' AS results
  FROM inputs GROUP BY run_id),
r AS (
  UPDATE runs SET
    (status, result, error, progress) = (
      SELECT * FROM runyard_run_outcome(c.n, c.ok, c.failed, c.discarded, runs.input_count,
                                        c.first_result, c.first_error, c.results,
                                        runs.progress)),
    finished_at = runyard_now(), updated_at = runyard_now(), waiting_for = NULL
  FROM c
  WHERE runs.id = c.run_id AND c.n = runs.input_count AND c.open = 0
    AND runs.status IN ('RUNNING', 'QUEUED', 'PAUSED')
  RETURNING runs.id, runs.status, runs.has_on_failure, runs.workflow, runs.workflow_version,
    runs.error, runs.priority),
hook AS (
  INSERT INTO items (run_id, idx, kind, wref, input, state, priority, due_at)
  SELECT r.id, -1 - (SELECT count(*) FROM items h WHERE h.run_id = r.id AND h.kind = 'hook'),
    'hook', r.workflow || '@' || r.workflow_version, r.error, 'queued', r.priority, runyard_now()
  FROM r
  WHERE r.has_on_failure AND r.status = 'FAILED'
    AND NOT EXISTS (SELECT 1 FROM items h WHERE h.run_id = r.id AND h.kind = 'hook'
                    AND h.state IN ('queued', 'processing')))
SELECT f.n, r.status AS final_status, runs.status AS run_status
FROM f JOIN runs ON runs.id = f.run_id LEFT JOIN r ON r.id = f.run_id;

-- name: insert_api_key
INSERT INTO api_keys (id, name, digest, scopes) VALUES (%(id)s, %(name)s, %(digest)s, %(scopes)s)
RETURNING id, name, scopes, created_at, last_used_at, revoked_at;

-- name: list_api_keys
SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys
ORDER BY created_at, id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, runyard_now()) WHERE id = %(id)s
RETURNING id, name, scopes, created_at, last_used_at, revoked_at;

-- name: find_api_key
SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys
WHERE digest = %(digest)s AND revoked_at IS NULL;

-- name: api_key_issued
SELECT 1 AS issued FROM api_keys WHERE digest = %(digest)s;

-- name: touch_api_key
UPDATE api_keys SET last_used_at = runyard_now() WHERE id = %(id)s;

-- name: insert_task
INSERT INTO tasks (id, name, workflow, input, options)
VALUES (%(id)s, %(name)s, %(workflow)s, %(input)s, %(options)s)
ON CONFLICT (id) DO NOTHING
RETURNING *;

-- name: get_task
SELECT * FROM tasks WHERE id = %(id)s;

-- name: list_tasks
SELECT * FROM tasks WHERE (%(after_id)s::text IS NULL OR id > %(after_id)s)
ORDER BY id LIMIT %(limit)s;

-- name: update_task
UPDATE tasks SET name = %(name)s, workflow = %(workflow)s, input = %(input)s,
  options = %(options)s, updated_at = runyard_now()
WHERE id = %(id)s
RETURNING *;

-- name: delete_task
DELETE FROM tasks WHERE id = %(id)s RETURNING id;

-- name: usage
-- Purged runs' credits count too (retention keeps usage).
SELECT to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, workflow, action, sum(amount) AS credits, count(*) AS charges
FROM (SELECT run_id, workflow, action, amount, created_at FROM credits
      UNION ALL SELECT NULL, workflow, action, amount, created_at FROM purged_credits) AS c
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- name: purgeable_runs
-- Runs that ended before the cutoff with nothing left to do: no item owned or still to
-- run (an on_failure hook runs after its run ended), no callback still to deliver. (A run
-- ends after it is created, so created_at < cutoff lets the status index serve.) Locked,
-- skipping runs another transaction holds: workers purging at once take different runs,
-- and a run being resumed or continued right now is left alone.
SELECT r.id FROM runs r
WHERE r.status IN ('SUCCEEDED', 'PARTIAL_SUCCEEDED', 'FAILED', 'CANCELED', 'CRASHED', 'INVALID')
  AND r.created_at < %(cutoff)s AND r.finished_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM items i WHERE i.run_id = r.id
                  AND (i.owner IS NOT NULL OR i.state IN ('queued', 'processing')))
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = r.id AND d.state = 'pending')
LIMIT %(limit)s
FOR UPDATE OF r SKIP LOCKED;

-- name: archive_purged_credits
INSERT INTO purged_credits (workflow, action, amount, created_at)
SELECT workflow, action, amount, created_at FROM credits WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_credits
DELETE FROM credits WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_logs
DELETE FROM logs WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_outputs
DELETE FROM outputs WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_steps
DELETE FROM steps WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_attempts
DELETE FROM attempts WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_sync_states
DELETE FROM sync_states WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_schedule_fires
-- (a fire's record goes with its run; skipped and missed fires, which have none, stay)
DELETE FROM schedule_fires WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_waiters
DELETE FROM waiters WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_deliveries
DELETE FROM deliveries WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_transitions
DELETE FROM run_transitions WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_items
DELETE FROM items WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_runs
DELETE FROM runs WHERE id = ANY(%(ids)s::text[]);

-- name: purge_events
-- Of the %(limit)s oldest stored events, those stored before %(cutoff)s (ids grow with
-- time: reading the oldest first bounds the statement, even when none is old enough).
DELETE FROM events
WHERE id IN (SELECT id FROM events ORDER BY id LIMIT %(limit)s)
  AND created_at < %(cutoff)s;

-- name: live_workers
SELECT id, host, pid, concurrency, workflows, started_at, heartbeat_at FROM workers
WHERE stopped_at IS NULL AND heartbeat_at > runyard_now() - %(seen_within_s)s
ORDER BY started_at;

-- name: count_open_runs
-- Runs not ended, by status: a range of runs_status, however long the history.
SELECT status, count(*) AS n FROM runs
WHERE status IN ('SCHEDULED', 'QUEUED', 'RUNNING', 'PAUSED') GROUP BY status;

-- name: transitions_since
-- Status changes recorded after the transition after_id, by new status, with the last
-- id read. Only those at least two seconds old: ids are taken when a transaction writes
-- and become visible when it commits, so a newer id may show before an older one; a
-- transaction of the store lasts milliseconds, and two seconds leave none behind.
SELECT to_status, count(*) AS n, max(id) AS last FROM run_transitions
WHERE id > %(after_id)s::bigint AND at < runyard_now() - 2
GROUP BY to_status;

-- name: last_transition
-- Where transitions_since starts: the newest transition at least two seconds old (a walk
-- back over the last two seconds' transitions).
SELECT id FROM run_transitions WHERE at < runyard_now() - 2 ORDER BY id DESC LIMIT 1;

-- name: checkpoint_steps_many
-- The hot path of a step: fence each item (locking its row) and record its pending
-- checkpoints, for every execution of a commit group in one statement, however many
-- finished a step together. Rows: the items still owned (fenced ones are
-- missing) with their run's status.
WITH j AS (
  SELECT * FROM json_to_recordset(%(fences)s::json)
         AS j(run_id text, idx int, owner text, epoch int, position int)),
f AS (
  UPDATE items i SET last_position = GREATEST(i.last_position, j.position)
  FROM j
  WHERE i.run_id = j.run_id AND i.idx = j.idx AND i.owner = j.owner AND i.epoch = j.epoch
  RETURNING i.run_id, i.idx),
s AS (
  INSERT INTO steps (run_id, item_idx, iteration, position, name, kind, status, result, error,
    attempts, started_at)
  SELECT c.run_id, c.idx, c.iteration, c.position, c.name, c.kind, c.status, c.result,
    c.error, c.attempts, c.started_at
  FROM json_to_recordset(%(checkpoints)s::json)
       AS c(run_id text, idx int, iteration int, position int, name text, kind text,
            status text, result text, error text, attempts int, started_at double precision)
  JOIN f ON f.run_id = c.run_id AND f.idx = c.idx
  ON CONFLICT (run_id, item_idx, iteration, position) DO UPDATE SET status = excluded.status,
    result = excluded.result, error = excluded.error, attempts = excluded.attempts,
    completed_at = runyard_now()
  WHERE steps.status = 'waiting' AND excluded.status <> 'waiting')
SELECT f.run_id, f.idx, r.status FROM f JOIN runs r ON r.id = f.run_id;

-- name: output_room
-- Whether a run with max_results may store one more output in this iteration (the run's
-- row locked: emits of its items take turns, so the count never passes the limit).
SELECT output_count < max_results AS room FROM runs WHERE id = %(run_id)s FOR UPDATE;

-- name: insert_output_counted
-- (With a key, in an incremental run of a schedule: not if an earlier fire's run
-- emitted that key: a record is delivered once across a schedule's fires; a keyed
-- output carries its run's schedule_id, set by a trigger, index outputs_schedule_key.)
-- insert_output for a run with max_results, counted on the run when the row is new.
INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
SELECT %(run_id)s, %(idx)s, %(iteration)s, %(position)s, %(key)s, %(data)s
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = %(run_id)s AND idx = %(idx)s AND owner = %(owner)s AND epoch = %(epoch)s)
  AND (%(key)s::text IS NULL
    OR (SELECT sync_mode FROM runs WHERE id = %(run_id)s) IS DISTINCT FROM 'incremental'
    OR NOT EXISTS (SELECT 1 FROM outputs o
    JOIN runs me ON me.id = %(run_id)s AND me.sync_mode = 'incremental'
    WHERE o.schedule_id = me.schedule_id AND o.key = %(key)s AND o.run_id <> me.id))
ON CONFLICT DO NOTHING
RETURNING id;

-- name: count_output
UPDATE runs SET output_count = output_count + 1 WHERE id = %(run_id)s;

-- name: mark_truncated
UPDATE runs SET truncated = TRUE WHERE id = %(run_id)s;

-- name: recount_outputs
-- A fork's output count: the outputs it took over from its source.
UPDATE runs SET output_count = (SELECT count(*) FROM outputs WHERE run_id = %(run_id)s)
WHERE id = %(run_id)s;

-- name: sole_inputs
-- The input of each of these runs that has exactly one (a page of a runs list).
SELECT i.run_id, i.input FROM items i
WHERE i.run_id = ANY(%(run_ids)s::text[]) AND i.idx = 0;

-- name: worker_liveness
-- What proves this worker dead early (see migration 0009): written once it holds its
-- session lock (lock_key), so a lock found free later means its session ended.
UPDATE workers SET host_id = %(host_id)s, proc_started = %(proc_started)s,
  lock_key = %(lock_key)s, lock_at = CASE WHEN %(lock_key)s::bigint IS NULL THEN NULL ELSE runyard_now() END,
  stopped_at = NULL
WHERE id = %(id)s;

-- name: workers_on_host
-- The other workers of this host (name, boot, pid namespace) not known to have stopped.
SELECT id, pid, proc_started FROM workers
WHERE host_id = %(host_id)s AND stopped_at IS NULL AND id <> %(id)s;

-- name: unlocked_workers
-- Workers not known to have stopped whose session lock (namespace 1381564416, their
-- lock_key) nobody holds, taken since the server last started: their session ended.
SELECT w.id, w.lock_key, w.host_id FROM workers w
WHERE w.stopped_at IS NULL AND w.lock_key IS NOT NULL AND w.id <> %(id)s
  AND w.lock_at > extract(epoch FROM pg_postmaster_start_time())
  AND NOT EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::text::bigint = 1381564416 AND l.objid::text::bigint = w.lock_key);

-- name: take_worker_lock
-- Held until the transaction ends: the worker cannot take its lock back meanwhile.
SELECT pg_try_advisory_xact_lock(1381564416, %(lock_key)s::int) AS got;

-- name: stop_dead_worker
UPDATE workers SET stopped_at = runyard_now()
WHERE id = %(id)s AND stopped_at IS NULL
  AND (%(lock_key)s::bigint IS NULL OR lock_key = %(lock_key)s::bigint)
RETURNING id;

-- name: requeue_owned
-- The items of workers known dead, as expire_leases re-queues those of expired leases.
UPDATE items SET owner = NULL, lease_expires_at = NULL, epoch = epoch + 1,
  parked = CASE WHEN parked = 2 THEN 2 ELSE 1 END,
  due_at = runyard_now() + random() * least(30.0, 0.25 * power(2, least(
    (SELECT recovery_attempts FROM runs WHERE id = items.run_id), 7)))
WHERE owner IS NOT NULL AND lease_expires_at IS NOT NULL AND owner = ANY(%(ids)s::text[])
RETURNING run_id, idx, kind, due_at;

-- name: worker_lock_state
-- Before a worker takes its lock back: whether another process recovered its items.
SELECT stopped_at FROM workers WHERE id = %(id)s FOR UPDATE;

-- name: run_leases
-- The items of a run in a worker's hands, with the lease each waits on and its worker.
SELECT i.idx, i.owner, i.lease_expires_at, w.heartbeat_at, w.stopped_at, runyard_now() AS now
FROM items i LEFT JOIN workers w ON w.id = i.owner
WHERE i.run_id = %(run_id)s AND i.owner IS NOT NULL AND i.lease_expires_at IS NOT NULL
ORDER BY i.lease_expires_at LIMIT 20;

-- Schedules (issue 20) -------------------------------------------------------------------

-- name: insert_schedule
INSERT INTO schedules (id, workflow, task_id, spec, paused, note, next_fire_at, due_at,
  remaining_actions)
VALUES (%(id)s, %(workflow)s, %(task_id)s, %(spec)s, %(paused)s, %(note)s, %(next_fire_at)s,
  %(due_at)s, %(remaining_actions)s)
ON CONFLICT (id) DO NOTHING
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE id = %(id)s;

-- name: lock_schedule
SELECT * FROM schedules WHERE id = %(id)s FOR UPDATE;

-- name: list_schedules
SELECT * FROM schedules
WHERE (%(after_id)s::text IS NULL OR id > %(after_id)s)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
ORDER BY id LIMIT %(limit)s;

-- name: update_schedule
UPDATE schedules SET workflow = %(workflow)s, task_id = %(task_id)s, spec = %(spec)s,
  paused = %(paused)s, note = %(note)s, next_fire_at = %(next_fire_at)s, due_at = %(due_at)s,
  remaining_actions = %(remaining_actions)s, updated_at = runyard_now()
WHERE id = %(id)s
RETURNING *;

-- name: delete_schedule
DELETE FROM schedules WHERE id = %(id)s RETURNING id;

-- name: delete_schedule_fires
DELETE FROM schedule_fires WHERE schedule_id = %(id)s;

-- name: claim_due_schedules
-- Due schedules, earliest first, each locked by one scheduler at a time: the others skip
-- it (SKIP LOCKED) and take the next ones. With the status of the latest fire's run.
SELECT s.*, r.status AS last_status FROM schedules s
LEFT JOIN runs r ON r.id = s.last_run_id
WHERE NOT s.paused AND s.due_at IS NOT NULL AND s.due_at <= %(now)s
ORDER BY s.due_at LIMIT %(limit)s
FOR UPDATE OF s SKIP LOCKED;

-- name: schedule_run_status
SELECT status FROM runs WHERE id = %(id)s;

-- name: advance_schedule
UPDATE schedules SET next_fire_at = %(next_fire_at)s, due_at = %(due_at)s,
  last_run_id = %(last_run_id)s, remaining_actions = %(remaining_actions)s,
  fired = fired + %(fired)s, skipped = skipped + %(skipped)s,
  start_failed = start_failed + %(failed)s, buffered = %(buffered)s, paused = %(paused)s,
  note = %(note)s, updated_at = runyard_now()
WHERE id = %(id)s;

-- name: peek_due_schedules
-- What a pass is about to claim, or due within %(ahead)s seconds (no lock): the scheduler
-- prepares their runs first. (The clock read once, in a subquery: a volatile function
-- compared row by row would read every schedule.)
SELECT id, workflow, task_id, spec FROM schedules
WHERE NOT paused AND due_at IS NOT NULL AND due_at <= (SELECT runyard_now()) + %(ahead)s
ORDER BY due_at LIMIT %(limit)s;

-- name: existing_fires
-- The fires already recorded for the schedules a pass claimed, from each one's next fire
-- time on (a backfill or a trigger may have recorded one): one walk of the primary key
-- per schedule.
SELECT f.schedule_id, f.fire_at
FROM json_to_recordset(%(bounds)s::json) AS b(id text, lo double precision)
JOIN schedule_fires f ON f.schedule_id = b.id AND f.fire_at >= b.lo AND f.fire_at <= %(hi)s;

-- name: record_fires
-- The fires of a pass (existing_fires told which are new), one row each of a JSON array.
INSERT INTO schedule_fires (schedule_id, fire_at, kind, state, run_id, error)
SELECT f.schedule_id, f.fire_at, f.kind, f.state, f.run_id, f.error
FROM json_to_recordset(%(fires)s::json) AS f(schedule_id text, fire_at double precision,
  kind text, state text, run_id text, error text)
ON CONFLICT (schedule_id, fire_at) DO NOTHING;

-- name: advance_schedules
-- advance_schedule for each schedule of a pass, one row each of a JSON array.
UPDATE schedules s SET next_fire_at = v.next_fire_at, due_at = v.due_at,
  last_run_id = v.last_run_id, remaining_actions = v.remaining_actions,
  fired = s.fired + v.fired, skipped = s.skipped + v.skipped,
  start_failed = s.start_failed + v.failed, buffered = v.buffered, paused = v.paused,
  note = v.note, updated_at = runyard_now()
FROM json_to_recordset(%(schedules)s::json) AS v(id text, next_fire_at double precision,
  due_at double precision, last_run_id text, remaining_actions integer, fired integer,
  skipped integer, failed integer, buffered integer, paused boolean, note text)
WHERE s.id = v.id;

-- name: purge_runless_fires
-- Of the fires with no run (skipped, missed, failed to start), the %(limit)s oldest
-- recorded before %(cutoff)s (index schedule_fires_runless); two purgers take different ones.
DELETE FROM schedule_fires
WHERE (schedule_id, fire_at) IN (
  SELECT schedule_id, fire_at FROM schedule_fires
  WHERE state IN ('skipped', 'missed', 'failed') AND created_at < %(cutoff)s
  ORDER BY created_at LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED);

-- name: skip_pending_fire
-- cancel_other against a fire whose run was never written, its scheduler gone (pending
-- for longer than a live one takes to start it): that fire is skipped, so that no sweep
-- starts it later.
UPDATE schedule_fires SET state = 'skipped', run_id = NULL
WHERE schedule_id = %(schedule_id)s AND fire_at BETWEEN %(lo)s AND %(hi)s
  AND run_id = %(run_id)s AND state = 'pending'
  AND created_at < runyard_now() - %(stale_s)s
  AND NOT EXISTS (SELECT 1 FROM runs WHERE id = %(run_id)s)
RETURNING schedule_id;

-- name: set_fire_state
UPDATE schedule_fires SET state = %(state)s, run_id = %(run_id)s, error = %(error)s
WHERE schedule_id = %(schedule_id)s AND fire_at = %(fire_at)s;

-- name: fire_started
-- A pending fire whose run now exists (no-op for a fire no longer pending).
UPDATE schedule_fires SET state = 'started'
WHERE schedule_id = %(schedule_id)s AND fire_at = %(fire_at)s AND state = 'pending';

-- name: fire_start_failed
UPDATE schedule_fires SET state = 'failed', error = %(error)s
WHERE schedule_id = %(schedule_id)s AND fire_at = %(fire_at)s AND state = 'pending'
RETURNING schedule_id;

-- name: count_start_failed
-- (A failed start is no run to wait for: the next fire is not held back by it.)
UPDATE schedules SET start_failed = start_failed + 1,
  last_run_id = CASE WHEN last_run_id = %(run_id)s THEN NULL ELSE last_run_id END
WHERE id = %(id)s;

-- name: first_buffered_fire
SELECT * FROM schedule_fires
WHERE schedule_id = %(schedule_id)s AND state = 'buffered'
ORDER BY fire_at LIMIT 1;

-- name: stale_pending_fires
-- Fires recorded by a scheduler that stopped before their run was written.
SELECT f.*, s.spec FROM schedule_fires f JOIN schedules s ON s.id = f.schedule_id
WHERE f.state = 'pending' AND f.created_at < %(before)s
ORDER BY f.created_at LIMIT %(limit)s;

-- name: get_fire
SELECT f.*, r.status AS run_status FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id
WHERE f.schedule_id = %(schedule_id)s AND f.fire_at = %(fire_at)s;

-- name: recent_fires
SELECT f.*, r.status AS run_status FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id
WHERE f.schedule_id = %(schedule_id)s
ORDER BY f.fire_at DESC LIMIT %(limit)s;

-- name: fires_between
SELECT f.*, r.status AS run_status FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id
WHERE f.schedule_id = %(schedule_id)s AND f.fire_at >= %(start)s AND f.fire_at < %(end)s
ORDER BY f.fire_at;

-- name: schedule_failed_runs
SELECT count(*) AS n FROM runs
WHERE schedule_id = %(schedule_id)s AND status IN ('FAILED', 'CRASHED', 'INVALID');

-- name: next_schedule_due
SELECT min(due_at) AS at FROM schedules WHERE NOT paused AND due_at IS NOT NULL;

-- name: schedule_sync_state
-- The sync state saved by the latest successful earlier run of the same schedule: a
-- schedule's fire is the next iteration of its sync (a failed fire does not advance it).
-- (The schedule's successful runs are walked newest first on runs_schedule_succeeded,
-- stopping at the first with a state.)
SELECT st.state FROM sync_states st
WHERE st.item_idx = %(idx)s AND st.run_id = (
  SELECT r.id FROM runs r
  WHERE r.schedule_id = (SELECT me.schedule_id FROM runs me WHERE me.id = %(run_id)s)
    AND r.status IN ('SUCCEEDED', 'PARTIAL_SUCCEEDED') AND r.id <> %(run_id)s
    AND EXISTS (SELECT 1 FROM sync_states s WHERE s.run_id = r.id AND s.item_idx = %(idx)s)
  ORDER BY r.finished_at DESC LIMIT 1)
ORDER BY st.iteration DESC LIMIT 1;

-- == callbacks (issue 21 item 1; see runyard.service.callbacks) ==

-- name: insert_run_callback
INSERT INTO run_callbacks (run_id, url, headers) VALUES (%(run_id)s, %(url)s, %(headers)s)
ON CONFLICT (run_id) DO NOTHING;

-- name: callback_open_runs
-- Runs whose callback still has messages to write, with what the messages need; locked,
-- skipping those another worker holds (two workers never batch one run's outputs twice).
SELECT c.run_id, c.url, c.headers, c.output_cursor, c.stopped, r.status, r.input_count,
  r.schedule_id, r.workflow, r.result, r.error, r.credits, r.credits_by_action,
  r.finished_at
FROM run_callbacks c JOIN runs r ON r.id = c.run_id
WHERE c.open
ORDER BY c.run_id
LIMIT %(limit)s
FOR UPDATE OF c SKIP LOCKED;

-- name: callback_outputs
SELECT id, item_idx, key, data, created_at FROM outputs
WHERE run_id = %(run_id)s AND id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: callback_inputs
SELECT idx, custom_data, state, result, error FROM items
WHERE run_id = %(run_id)s AND kind = 'input' ORDER BY idx;

-- name: advance_callback
UPDATE run_callbacks SET output_cursor = %(cursor)s, open = %(open)s WHERE run_id = %(run_id)s;

-- name: insert_delivery
INSERT INTO deliveries (message_id, run_id, item_idx, url, headers, kind, body)
VALUES (%(message_id)s, %(run_id)s, %(item_idx)s, %(url)s, %(headers)s, %(kind)s, %(body)s)
ON CONFLICT (message_id) DO NOTHING;

-- name: claim_deliveries
-- Due messages, leased to the caller: the lease is the next attempt time itself, so a
-- worker that dies mid-delivery leaves its messages due again once the lease is over.
UPDATE deliveries SET owner = %(owner)s, attempts = attempts + 1,
  next_attempt_at = runyard_now() + %(lease_s)s
WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending'
             AND next_attempt_at <= runyard_now()
             ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING *;

-- name: next_delivery_due
SELECT min(next_attempt_at) - runyard_now() AS wait_s FROM deliveries WHERE state = 'pending';

-- name: callback_work
-- Whether any run's callback is open, and when the next pending message is due (seconds
-- from now, None: none): the delivery loop's first look, a read, so that a deployment
-- without callbacks writes nothing when runs end.
SELECT EXISTS (SELECT 1 FROM run_callbacks WHERE open) AS open_runs,
  (SELECT min(next_attempt_at) - runyard_now() FROM deliveries WHERE state = 'pending') AS wait_s;

-- name: insert_delivery_attempt
-- An attempt, recorded if the caller still holds the message (fenced on the owner and
-- the attempt number; the row stays locked for finish_delivery, sent next, which clears
-- the owner).
INSERT INTO delivery_attempts (delivery_id, run_id, attempt, status_code, latency_ms, error,
  next_attempt_at)
SELECT id, run_id, %(attempt)s::integer, %(status_code)s::integer,
  %(latency_ms)s::double precision, %(error)s::text,
  CASE WHEN %(state)s::text = 'pending' AND state = 'pending'
    THEN runyard_now() + %(delay_s)s::double precision END
FROM deliveries WHERE id = %(id)s AND owner = %(owner)s AND attempts = %(attempt)s
FOR UPDATE;

-- name: finish_delivery
-- An attempt's outcome, fenced on the owner and the attempt number. A message stopped
-- while in flight (a 410 to another message of its run) stays stopped unless delivered.
UPDATE deliveries SET state = CASE WHEN state = 'stopped' AND %(state)s = 'pending'
    THEN 'stopped' ELSE %(state)s END,
  owner = NULL, last_status = %(status_code)s, last_error = %(error)s,
  next_attempt_at = CASE WHEN %(state)s = 'pending' AND state = 'pending'
    THEN runyard_now() + %(delay_s)s ELSE next_attempt_at END,
  delivered_at = CASE WHEN %(state)s = 'delivered' THEN runyard_now() END
WHERE id = %(id)s AND owner = %(owner)s AND attempts = %(attempt)s
RETURNING id;

-- name: stop_run_deliveries
-- A 410: nothing more to this URL for this run. A message in flight keeps its owner, so
-- that its attempt is still recorded (finish_delivery keeps it stopped).
UPDATE deliveries SET state = 'stopped'
WHERE run_id = %(run_id)s AND url = %(url)s AND state = 'pending';

-- name: stop_run_callback
UPDATE run_callbacks SET stopped = TRUE WHERE run_id = %(run_id)s;

-- name: stop_schedule_callback
UPDATE schedules SET spec = %(spec)s WHERE id = %(id)s;

-- name: list_deliveries
SELECT id, message_id, run_id, item_idx, url, kind, state, attempts, next_attempt_at,
  last_status, last_error, created_at, delivered_at
FROM deliveries WHERE run_id = %(run_id)s ORDER BY id LIMIT %(limit)s;

-- name: list_delivery_attempts
SELECT delivery_id, attempt, status_code, latency_ms, error, next_attempt_at, at
FROM delivery_attempts WHERE run_id = %(run_id)s ORDER BY delivery_id, id;

-- name: redeliver
UPDATE deliveries SET state = 'pending', owner = NULL, next_attempt_at = runyard_now()
WHERE id = %(id)s AND run_id = %(run_id)s
RETURNING id;

-- name: webhook_secrets
SELECT id, secret, created_at, expires_at FROM webhook_secrets
WHERE expires_at IS NULL OR expires_at > runyard_now() ORDER BY id DESC;

-- name: insert_webhook_secret
INSERT INTO webhook_secrets (secret) VALUES (%(secret)s) RETURNING id;

-- name: insert_first_webhook_secret
-- The first secret, unless another process stored one meanwhile.
INSERT INTO webhook_secrets (secret)
SELECT %(secret)s WHERE NOT EXISTS (SELECT 1 FROM webhook_secrets
                                   WHERE expires_at IS NULL OR expires_at > runyard_now());

-- name: retire_webhook_secrets
UPDATE webhook_secrets SET expires_at = runyard_now() + %(grace_s)s
WHERE expires_at IS NULL AND id <> %(keep)s;

-- name: purge_run_callbacks
DELETE FROM run_callbacks WHERE run_id = ANY(%(ids)s::text[]);

-- name: purge_delivery_attempts
DELETE FROM delivery_attempts WHERE run_id = ANY(%(ids)s::text[]);

-- ---------------------------------------------------------------------------------------
-- The dashboard's overview (issue 22, store/overview.py). Each read is bounded whatever
-- the history holds: counts stop at a cap, the ended runs are a range of an index on the
-- finish time, the leases a page of items_lease.

-- name: overview_open_runs
-- Runs not ended, by status, each count a range of runs_status that stops after 100,001
-- rows (service/overview.py OVERVIEW_COUNT_CAP + 1). Each status and the bound are written
-- out: given as parameters (or joined from a VALUES list), PostgreSQL plans a sequential
-- scan of every run for them (1.8 s over 1,000,000 runs; this form: 0.2 ms).
SELECT 'SCHEDULED' AS status,
  (SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'SCHEDULED' LIMIT 100001) AS c) AS n
UNION ALL SELECT 'QUEUED',
  (SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'QUEUED' LIMIT 100001) AS c)
UNION ALL SELECT 'RUNNING',
  (SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'RUNNING' LIMIT 100001) AS c)
UNION ALL SELECT 'PAUSED',
  (SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'PAUSED' LIMIT 100001) AS c);

-- name: overview_workflow_queues
-- Runs not ended by published workflow, a column per status: a range of runs_workflow per
-- pair, stopping after 100,001 rows (written out, as in overview_open_runs).
SELECT w.name AS workflow,
  (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.workflow = w.name
                         AND r.status = 'SCHEDULED' LIMIT 100001) AS x) AS scheduled,
  (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.workflow = w.name
                         AND r.status = 'QUEUED' LIMIT 100001) AS x) AS queued,
  (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.workflow = w.name
                         AND r.status = 'RUNNING' LIMIT 100001) AS x) AS running,
  (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.workflow = w.name
                         AND r.status = 'PAUSED' LIMIT 100001) AS x) AS paused
FROM (SELECT DISTINCT name FROM workflows) AS w
ORDER BY 1;

-- name: overview_ended_runs
-- Runs that ended in [since, until), by bucket of :bucket_s seconds and status: a range of
-- runs_finished_key (its expression, exactly), whose size is what ended in the window.
SELECT floor(coalesce(finished_at, 'Infinity'::double precision) / %(bucket_s)s::double precision)::bigint AS bucket,
       status, count(*) AS n
FROM runs
WHERE coalesce(finished_at, 'Infinity'::double precision) >= %(since)s::double precision
  AND coalesce(finished_at, 'Infinity'::double precision) < %(until)s::double precision
GROUP BY 1, 2;

-- name: overview_leases
-- Items held by a worker now, with their run's workflow: a page of items_lease.
SELECT i.owner, i.run_id, i.idx, i.name, i.started_at, i.lease_expires_at, r.workflow
FROM items i JOIN runs r ON r.id = i.run_id
WHERE i.owner IS NOT NULL
ORDER BY i.lease_expires_at
LIMIT %(limit)s;

-- ---------------------------------------------------------------------------------------
-- The dashboard's sessions (issue 22, store/admin.py): a signed-in browser names its key
-- by id; the session is signed with the key's digest, which never leaves the server.

-- name: find_api_key_by_id
SELECT id, name, scopes, created_at, last_used_at, revoked_at, digest FROM api_keys
WHERE id = %(id)s AND revoked_at IS NULL;

-- Runs lists by schedule and by task (migration 0018). The id is bounded by a range and
-- leads the walk's order (as list_runs_by_status_ does), so that no plan walks runs_created
-- and filters on it.
-- name: list_runs_by_schedule_desc
-- A schedule's runs: one walk of runs_schedule (schedule_id, created_at, id) in list order.
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND r.schedule_id >= %(schedule_id)s AND r.schedule_id <= %(schedule_id)s
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND (r.created_at, r.id) < (least(coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(created_before)s::double precision, 'Infinity')),
    CASE WHEN coalesce(%(after_at)s::double precision, 'Infinity') < coalesce(%(created_before)s::double precision, 'Infinity') THEN %(after_id)s::text ELSE '' END)
ORDER BY r.schedule_id DESC, r.created_at DESC, r.id DESC LIMIT %(limit)s;

-- name: list_runs_by_task_desc
-- A task's runs: one walk of runs_task (task_id, created_at, id) in list order.
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND r.task_id >= %(task_id)s AND r.task_id <= %(task_id)s
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s)
  AND r.created_at >= coalesce(%(created_after)s::double precision, '-Infinity')
  AND (r.created_at, r.id) < (least(coalesce(%(after_at)s::double precision, 'Infinity'), coalesce(%(created_before)s::double precision, 'Infinity')),
    CASE WHEN coalesce(%(after_at)s::double precision, 'Infinity') < coalesce(%(created_before)s::double precision, 'Infinity') THEN %(after_id)s::text ELSE '' END)
ORDER BY r.task_id DESC, r.created_at DESC, r.id DESC LIMIT %(limit)s;

-- name: list_runs_by_schedule_asc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND (%(task_id)s::text IS NULL OR r.task_id = %(task_id)s)
  AND r.schedule_id >= %(schedule_id)s AND r.schedule_id <= %(schedule_id)s
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s)
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (r.created_at, r.id) > (greatest(coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(created_after)s::double precision, '-Infinity')),
    CASE WHEN coalesce(%(after_at)s::double precision, '-Infinity') > coalesce(%(created_after)s::double precision, '-Infinity') THEN %(after_id)s::text ELSE '' END)
ORDER BY r.schedule_id ASC, r.created_at ASC, r.id ASC LIMIT %(limit)s;

-- name: list_runs_by_task_asc
SELECT r.* FROM runs r
WHERE (%(statuses)s::text[] IS NULL OR r.status = ANY(%(statuses)s::text[]))
  AND (%(ids)s::text[] IS NULL OR r.id = ANY(%(ids)s::text[]))
  AND (%(prefix)s::text IS NULL OR r.id LIKE %(prefix)s ESCAPE '\')
  AND r.task_id >= %(task_id)s AND r.task_id <= %(task_id)s
  AND (%(schedule_id)s::text IS NULL OR r.schedule_id = %(schedule_id)s)
  AND (%(mode)s::text IS NULL OR r.mode = %(mode)s)
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s)
  AND r.created_at < coalesce(%(created_before)s::double precision, 'Infinity')
  AND (r.created_at, r.id) > (greatest(coalesce(%(after_at)s::double precision, '-Infinity'), coalesce(%(created_after)s::double precision, '-Infinity')),
    CASE WHEN coalesce(%(after_at)s::double precision, '-Infinity') > coalesce(%(created_after)s::double precision, '-Infinity') THEN %(after_id)s::text ELSE '' END)
ORDER BY r.task_id ASC, r.created_at ASC, r.id ASC LIMIT %(limit)s;
