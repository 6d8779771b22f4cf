-- Runyard queries, SQLite. Every write transaction is BEGIN IMMEDIATE, so the whole
-- database is serialized for writers: no row locks are needed (compare postgres/).
-- Lists arrive as JSON text and are read with json_each. ry_now() is the machine's
-- clock in seconds (registered on every connection).

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS runyard_migrations (
  version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL
);

-- name: lock_migrations
SELECT 1;

-- name: applied_migrations
SELECT version FROM runyard_migrations ORDER BY version;

-- name: record_migration
INSERT INTO runyard_migrations (version, name, applied_at) VALUES (:version, :name, ry_now());

-- name: now
SELECT ry_now() AS now;

-- name: upsert_workflow
INSERT INTO workflows (name, version, description, input_schema, options)
VALUES (:name, :version, :description, :input_schema, :options)
ON CONFLICT (name, version) DO UPDATE SET description = excluded.description,
  input_schema = excluded.input_schema, options = excluded.options, updated_at = ry_now();

-- name: list_workflows
SELECT name, version, description, input_schema, options, registered_at, updated_at
FROM workflows ORDER BY name, updated_at DESC;

-- name: get_workflow
SELECT name, version, description, input_schema, options, registered_at, updated_at
FROM workflows WHERE name = :name AND (:version IS NULL OR version = :version)
ORDER BY updated_at DESC LIMIT 1;

-- name: upsert_flow_key
-- A definition that names the key without limits (parallelism and rate both NULL) uses
-- the key as it is: the limits stored for it stay.
INSERT INTO flow_keys (key, parallelism, rate, period_s)
VALUES (:key, :parallelism, :rate, :period_s)
ON CONFLICT (key) DO UPDATE SET parallelism = excluded.parallelism, rate = excluded.rate,
  period_s = excluded.period_s, updated_at = ry_now()
WHERE excluded.parallelism IS NOT NULL OR excluded.rate IS NOT NULL;

-- name: upsert_worker
INSERT INTO workers (id, host, pid, concurrency, workflows)
VALUES (:id, :host, :pid, :concurrency, :workflows)
ON CONFLICT (id) DO UPDATE SET workflows = excluded.workflows, heartbeat_at = ry_now();

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = ry_now() WHERE id = :id;

-- name: worker_stopped
UPDATE workers SET stopped_at = ry_now() WHERE id = :id;

-- name: insert_run
INSERT INTO runs (id, workflow, workflow_version, mode, status, priority, input_count,
  item_count, task_id, schedule_id, parent_id, sync_mode, max_results, options, flow_key,
  timeout_s, not_before, max_recovery_attempts, has_on_failure, error, finished_at,
  request)
VALUES (:id, :workflow, :workflow_version, :mode, :status, :priority, :input_count,
  :input_count, :task_id, :schedule_id, :parent_id, :sync_mode, :max_results, :options,
  :flow_key, :timeout_s, coalesce(:not_before, ry_now() + :delay_s),
  :max_recovery_attempts, :has_on_failure, :error,
  CASE WHEN :status = 'INVALID' THEN ry_now() END,
  :request)
ON CONFLICT (id) DO NOTHING
RETURNING *, coalesce(not_before, created_at) AS due_at;

-- name: insert_item
-- The run's row gives the item its due time, priority and flow key (an item due later
-- is parked until then); an existing run (an idempotent retry) already has its items, so
-- the insert does nothing.
INSERT INTO items (run_id, idx, kind, wref, input, custom_data, state, error, priority,
  flow_key, iteration, due_at, finished_at, parked)
SELECT r.id, :idx, 'input', :wref, :input, :custom_data, :state, :error,
  r.priority, r.flow_key, r.iteration, coalesce(r.not_before, r.created_at),
  CASE WHEN :state = 'discarded' THEN ry_now() END,
  CASE WHEN coalesce(r.not_before, r.created_at) > ry_now() THEN 1 ELSE 0 END
FROM runs r WHERE r.id = :run_id
ON CONFLICT DO NOTHING;

-- name: promote_scheduled
UPDATE runs SET status = 'QUEUED', updated_at = ry_now()
WHERE status = 'SCHEDULED' AND not_before <= ry_now();

-- name: unpark_due
-- Parked items whose time came are ready again (with a claim that scans, every ~100 ms
-- and after a wake-up; an index probe when none came due). Bounded: the rest come with
-- the next scans.
UPDATE items SET parked = 0
WHERE rowid IN (
  SELECT rowid FROM items
  WHERE parked = 1 AND owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map'
    AND due_at <= ry_now()
  ORDER BY due_at LIMIT :limit);

-- name: next_due
-- Seconds until the first parked item comes due, by the database's clock; negative: due,
-- not readied yet; NULL: none (see the PostgreSQL query). The first entry of
-- items_parked: one probe.
SELECT (SELECT min(due_at) FROM items
        WHERE parked = 1 AND owner IS NULL AND state IN ('queued', 'processing')
          AND kind <> 'map') - ry_now() AS due_in;

-- name: claim
-- Ready items without a flow-control key, best first. Each workflow reference is one
-- walk of items_ready in claim order that stops after :limit rows (a backlog of any size
-- costs a batch); the walks are merged and the best :limit claimed. (A hook item never
-- has a key: it may run after its run ended.)
UPDATE items SET owner = :owner, epoch = epoch + 1, lease_expires_at = ry_now() + :lease_s,
  state = 'processing', attempt = attempt + 1, started_at = coalesce(started_at, ry_now()),
  waiting_for = NULL
WHERE rowid IN (
  SELECT i.rowid FROM json_each(:wrefs) AS w JOIN items AS i ON i.rowid IN (
    SELECT rowid FROM items
    WHERE wref = w.value AND flow_key IS NULL AND parked = 0 AND owner IS NULL
      AND state IN ('queued', 'processing') AND kind <> 'map'
    ORDER BY priority DESC, due_at LIMIT :limit)
  ORDER BY i.priority DESC, i.due_at LIMIT :limit)
RETURNING run_id, idx, kind, wref, input, custom_data, iteration, generation, attempt,
  last_position, parent_idx, epoch, flow_key;

-- name: claim_keyed
-- claim, for the ready items of one flow-control key (items_ready_keyed); the caller
-- has taken the key's capacity.
UPDATE items SET owner = :owner, epoch = epoch + 1, lease_expires_at = ry_now() + :lease_s,
  state = 'processing', attempt = attempt + 1, started_at = coalesce(started_at, ry_now()),
  waiting_for = NULL
WHERE rowid IN (
  SELECT i.rowid FROM json_each(:wrefs) AS w JOIN items AS i ON i.rowid IN (
    SELECT rowid FROM items
    WHERE wref = w.value AND flow_key = :flow_key AND parked = 0 AND owner IS NULL
      AND state IN ('queued', 'processing') AND kind <> 'map' AND flow_key IS NOT NULL
    ORDER BY priority DESC, due_at LIMIT :limit)
  ORDER BY i.priority DESC, i.due_at LIMIT :limit)
RETURNING run_id, idx, kind, wref, input, custom_data, iteration, generation, attempt,
  last_position, parent_idx, epoch, flow_key;

-- name: due_flow_keys
-- The flow-control keys with ready items of these workflows: a skip from key to key
-- through items_ready_keyed (one probe per key found), not a read of every keyed item.
WITH RECURSIVE k(wref, flow_key) AS (
  SELECT w.value, (SELECT i.flow_key FROM items i
                   WHERE i.wref = w.value AND i.flow_key IS NOT NULL AND i.parked = 0
                     AND i.owner IS NULL AND i.state IN ('queued', 'processing')
                     AND i.kind <> 'map'
                   ORDER BY i.flow_key LIMIT 1)
  FROM json_each(:wrefs) AS w
  UNION ALL
  SELECT k.wref, (SELECT i.flow_key FROM items i
                  WHERE i.wref = k.wref AND i.flow_key > k.flow_key AND i.parked = 0
                    AND i.owner IS NULL AND i.state IN ('queued', 'processing')
                    AND i.kind <> 'map' AND i.flow_key IS NOT NULL
                  ORDER BY i.flow_key LIMIT 1)
  FROM k WHERE k.flow_key IS NOT NULL)
SELECT DISTINCT flow_key FROM k WHERE flow_key IS NOT NULL LIMIT :limit;

-- name: start_runs
-- The runs of claimed items. (SQLite has one writer: a run's row rewritten at every claim
-- of its items holds nobody up, as it would on PostgreSQL.)
UPDATE runs SET status = CASE WHEN status = 'QUEUED' THEN 'RUNNING' ELSE status END,
  started_at = coalesce(started_at, ry_now()),
  deadline_at = coalesce(deadline_at, ry_now() + timeout_s),
  waiting_for = NULL, updated_at = ry_now()
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, deadline_at, sync_mode, max_results, options, error, item_count, timeout_s;

-- name: has_due_work
SELECT 1 WHERE EXISTS (
    SELECT 1 FROM items WHERE wref IN (SELECT value FROM json_each(:wrefs))
      AND flow_key IS NULL AND parked = 0 AND owner IS NULL
      AND state IN ('queued', 'processing') AND kind <> 'map')
  OR EXISTS (
    SELECT 1 FROM items WHERE wref IN (SELECT value FROM json_each(:wrefs))
      AND flow_key IS NOT NULL AND parked = 0 AND owner IS NULL
      AND state IN ('queued', 'processing') AND kind <> 'map')
  OR EXISTS (
    SELECT 1 FROM items WHERE parked = 1 AND owner IS NULL
      AND state IN ('queued', 'processing') AND kind <> 'map' AND due_at <= ry_now())
  OR EXISTS (SELECT 1 FROM runs WHERE status = 'SCHEDULED' AND not_before <= ry_now());

-- name: item_history
SELECT * FROM steps WHERE run_id = :run_id AND item_idx = :idx AND iteration = :iteration
ORDER BY position;

-- name: item_failed_attempts
-- By position, the failed attempts an execution continues counting from, and how many of
-- them were rate limited: every attempt of the workflow's body (position 0), a step's
-- since the body last failed (each attempt of the body gives its steps their retries);
-- and a step's failed attempts in all (in every attempt of the body), for its true count.
SELECT a.position,
  count(*) FILTER (WHERE a.position = 0 OR a.id > l.last0) AS n,
  count(*) FILTER (WHERE (a.position = 0 OR a.id > l.last0)
                   AND json_extract(a.error, '$.code') = 'rate_limited') AS limited,
  count(*) AS total
FROM attempts a, (
  SELECT coalesce(max(id), 0) AS last0 FROM attempts
  WHERE run_id = :run_id AND item_idx = :idx AND iteration = :iteration
    AND generation = :generation AND position = 0) l
WHERE a.run_id = :run_id AND a.item_idx = :idx AND a.iteration = :iteration
  AND a.generation = :generation
GROUP BY a.position;

-- name: previous_sync_state
SELECT state FROM sync_states
WHERE run_id = :run_id AND item_idx = :idx AND iteration < :iteration
ORDER BY iteration DESC LIMIT 1;

-- name: lock_flow_key
SELECT parallelism, rate, period_s FROM flow_keys WHERE key = :key;

-- name: flow_active
SELECT (SELECT count(*) FROM items
        WHERE flow_key = :key AND owner IS NOT NULL AND lease_expires_at > ry_now())
     + (SELECT count(*) FROM flow_slots WHERE key = :key AND expires_at > ry_now()) AS n;

-- name: flow_recent
SELECT count(*) AS n FROM flow_starts WHERE key = :key AND at > ry_now() - :period_s;

-- name: flow_retry_in
SELECT (SELECT min(at) FROM flow_starts WHERE key = k.key AND at > ry_now() - k.period_s)
       + k.period_s - ry_now() AS wait_s
FROM flow_keys k WHERE k.key = :key;

-- name: insert_flow_start
INSERT INTO flow_starts (key, at) VALUES (:key, ry_now());

-- name: insert_flow_slot
INSERT INTO flow_slots (key, holder, owner, expires_at)
VALUES (:key, :holder, :owner, ry_now() + :ttl_s)
ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at;

-- name: delete_flow_slot
DELETE FROM flow_slots WHERE key = :key AND holder = :holder;

-- name: extend_flow_slots
UPDATE flow_slots SET expires_at = ry_now() + :lease_s WHERE owner = :owner;

-- name: expire_flow_slots
DELETE FROM flow_slots WHERE expires_at < ry_now();

-- name: trim_flow_starts
DELETE FROM flow_starts
WHERE at < ry_now() - 1 - coalesce((SELECT period_s FROM flow_keys k WHERE k.key = flow_starts.key), 0);

-- name: fence
UPDATE items SET last_position = max(last_position, :position)
WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch
RETURNING (SELECT status FROM runs WHERE id = :run_id) AS status;

-- name: upsert_step
INSERT INTO steps (run_id, item_idx, iteration, position, name, kind, status, result, error,
  attempts, started_at)
SELECT :run_id, :idx, :iteration, :position, :name, :kind, :status, :result, :error, :attempts, :started_at
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch)
ON CONFLICT (run_id, item_idx, iteration, position) DO UPDATE SET status = excluded.status,
  result = excluded.result, error = excluded.error, attempts = excluded.attempts,
  completed_at = ry_now()
WHERE steps.status = 'waiting' AND excluded.status <> 'waiting';

-- name: insert_output
-- (With a key, in an incremental run of a schedule: not if an earlier fire's run
-- emitted that key: a record is delivered once across a schedule's fires; a keyed
-- output carries its run's schedule_id, set by a trigger, index outputs_schedule_key.)
INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
SELECT :run_id, :idx, :iteration, :position, :key, :data
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch)
  AND (:key IS NULL
    OR (SELECT sync_mode FROM runs WHERE id = :run_id) IS NOT 'incremental'
    OR NOT EXISTS (SELECT 1 FROM outputs o
    JOIN runs me ON me.id = :run_id AND me.sync_mode = 'incremental'
    WHERE o.schedule_id = me.schedule_id AND o.key = :key AND o.run_id <> me.id))
ON CONFLICT DO NOTHING;

-- name: insert_credit
-- A trigger adds the amount to the run's credits when (and only when) the row is new.
INSERT INTO credits (run_id, item_idx, iteration, position, workflow, action, amount)
SELECT r.id, :idx, :iteration, :position, r.workflow, :action, :amount
FROM runs r WHERE r.id = :run_id AND EXISTS (SELECT 1 FROM items WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch)
ON CONFLICT DO NOTHING;

-- name: save_sync_state
INSERT INTO sync_states (run_id, item_idx, iteration, state)
SELECT :run_id, :idx, :iteration, :state
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch)
ON CONFLICT (run_id, item_idx, iteration) DO UPDATE SET state = excluded.state,
  saved_at = ry_now();

-- name: insert_attempt
INSERT INTO attempts (run_id, item_idx, iteration, generation, position, name, attempt,
  started_at, error)
VALUES (:run_id, :idx, :iteration, :generation, :position, :name, :attempt, :started_at,
  :error);

-- name: lock_run
SELECT status FROM runs WHERE id = :run_id;

-- name: finish_item
UPDATE items SET state = :state, result = :result, error = :error, owner = NULL,
  lease_expires_at = NULL, finished_at = ry_now(), waiting_for = NULL
WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch;

-- name: finalize_run
UPDATE runs SET
  status = CASE WHEN c.ok = c.n THEN 'SUCCEEDED' WHEN c.discarded = c.n THEN 'INVALID'
                WHEN c.ok = 0 THEN 'FAILED' ELSE 'PARTIAL_SUCCEEDED' END,
  result = CASE WHEN runs.input_count = 1 THEN c.first_result
                ELSE (SELECT json_group_array(json(coalesce(result, 'null')))
                      FROM (SELECT result FROM items WHERE run_id = :run_id AND kind = 'input'
                            ORDER BY idx)) END,
  error = CASE WHEN c.ok = c.n THEN NULL
               WHEN runs.input_count = 1 THEN c.first_error
               WHEN c.discarded = c.n THEN json_object('code', 'invalid_input',
                      'message', 'all ' || c.n || ' inputs were discarded: none matches '
                        || 'the workflow''s input type (each item has its error)',
                      'discarded', c.discarded)
               ELSE json_object('code', 'items_failed', 'message',
                      c.failed || ' input(s) failed, ' || c.discarded || ' discarded',
                      'failed', c.failed, 'discarded', c.discarded) END,
  progress = CASE WHEN c.ok = c.n THEN 1.0 ELSE runs.progress END,
  finished_at = ry_now(), updated_at = ry_now(), waiting_for = NULL
FROM (SELECT count(*) AS n,
        count(*) FILTER (WHERE state = 'completed') AS ok,
        count(*) FILTER (WHERE state = 'failed') AS failed,
        count(*) FILTER (WHERE state = 'discarded') AS discarded,
        count(*) FILTER (WHERE state IN ('queued', 'processing')) AS open,
        max(CASE WHEN idx = 0 THEN result END) AS first_result,
        max(CASE WHEN idx = 0 THEN error END) AS first_error
      -- (the gate first, in a CROSS JOIN that SQLite keeps outermost: while an input is
      -- open, the run's items are not read at all)
      FROM (SELECT 1 WHERE NOT EXISTS (
              SELECT 1 FROM items o WHERE o.run_id = :run_id AND o.kind = 'input'
                AND o.state IN ('queued', 'processing'))) AS gate
      CROSS JOIN items WHERE run_id = :run_id AND kind = 'input') AS c
WHERE runs.id = :run_id AND runs.status IN ('RUNNING', 'QUEUED', 'PAUSED') AND c.open = 0
  AND c.n > 0
RETURNING runs.status;

-- name: insert_hook_item
INSERT INTO items (run_id, idx, kind, wref, input, state, priority, due_at)
SELECT r.id, -1 - (SELECT count(*) FROM items h WHERE h.run_id = r.id AND h.kind = 'hook'),
  'hook', r.workflow || '@' || r.workflow_version, r.error, 'queued', r.priority, ry_now()
FROM runs r
WHERE r.id = :run_id AND r.has_on_failure AND r.status IN ('FAILED', 'CRASHED')
  AND NOT EXISTS (SELECT 1 FROM items h WHERE h.run_id = r.id AND h.kind = 'hook'
                  AND h.state IN ('queued', 'processing'));

-- name: suspend_item
-- Parked until due_at (or, when its run was paused meanwhile, until resumed).
UPDATE items SET owner = NULL, lease_expires_at = NULL, due_at = :due_at,
  waiting_for = :waiting_for,
  parked = CASE WHEN parked = 2 THEN 2 WHEN :due_at > ry_now() THEN 1 ELSE 0 END
WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch;

-- name: set_run_waiting
UPDATE runs SET waiting_for = :waiting_for, updated_at = ry_now()
WHERE id = :run_id AND EXISTS (SELECT 1 FROM items WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch);

-- name: lock_event
SELECT 1;

-- name: first_event
SELECT event_id, data FROM events
WHERE event_id IN (SELECT value FROM json_each(:event_ids)) AND created_at >= :since
ORDER BY id LIMIT 1;

-- name: insert_event
INSERT INTO events (event_id, data) VALUES (:event_id, :data);

-- name: insert_waiter
INSERT INTO waiters (event_id, run_id, item_idx, position, since, deadline)
VALUES (:event_id, :run_id, :idx, :position, :since, :deadline)
ON CONFLICT (event_id, run_id, item_idx) DO UPDATE SET position = excluded.position,
  since = excluded.since, deadline = excluded.deadline;

-- name: wake_waiters
UPDATE items SET due_at = ry_now(), parked = CASE WHEN parked = 2 THEN 2 ELSE 0 END
WHERE owner IS NULL AND (run_id, idx) IN (
  SELECT run_id, item_idx FROM waiters WHERE event_id = :event_id)
RETURNING run_id;

-- name: delete_event_waiters
DELETE FROM waiters WHERE (run_id, item_idx) IN (
  SELECT run_id, item_idx FROM waiters WHERE event_id = :event_id);

-- name: delete_item_waiters
DELETE FROM waiters WHERE run_id = :run_id AND item_idx = :idx;

-- name: delete_run_waiters
DELETE FROM waiters WHERE run_id = :run_id;

-- name: insert_map_item
INSERT INTO items (run_id, idx, kind, parent_idx, name, wref, input, state, priority,
  iteration, due_at)
SELECT p.run_id, :idx, 'map', p.idx, :name, p.wref, :input, 'queued', p.priority,
  p.iteration, ry_now()
FROM items p WHERE p.run_id = :run_id AND p.idx = :parent_idx
ON CONFLICT DO NOTHING;

-- name: reserve_items
UPDATE runs SET item_count = item_count + :n WHERE id = :run_id
RETURNING item_count - :n AS base;

-- name: set_element
UPDATE items SET state = :state, result = :result, error = :error,
  started_at = coalesce(started_at, ry_now()),
  finished_at = CASE WHEN :state IN ('completed', 'failed') THEN ry_now() END
WHERE run_id = :run_id AND idx = :idx AND state <> 'completed';

-- name: set_progress
UPDATE runs SET progress = :progress, progress_message = :message, updated_at = ry_now()
WHERE id = :run_id;

-- name: insert_log
-- Fenced like a checkpoint: a worker that lost the item writes no line.
INSERT INTO logs (run_id, item_idx, iteration, attempt, level, message)
SELECT :run_id, :idx, :iteration, :attempt, :level, :message
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch)
RETURNING id;

-- name: extend_lease
UPDATE items SET lease_expires_at = ry_now() + :lease_s
WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch
RETURNING epoch;

-- name: stopping_runs
SELECT id, status FROM runs
WHERE id IN (SELECT value FROM json_each(:ids)) AND status NOT IN ('QUEUED', 'RUNNING');

-- name: expire_leases
-- A recovered item waits a jittered backoff that grows with its run's recoveries, so
-- the items of a worker that died are not all claimed together again (one of them may
-- be what killed it).
UPDATE items SET owner = NULL, lease_expires_at = NULL, epoch = epoch + 1,
  parked = CASE WHEN parked = 2 THEN 2 ELSE 1 END,
  due_at = ry_now() + (abs(random()) % 1000) / 1000.0 * min(30.0, 0.25 * (1 << min(
    (SELECT recovery_attempts FROM runs WHERE id = items.run_id), 7)))
WHERE rowid IN (SELECT rowid FROM items
                WHERE owner IS NOT NULL AND lease_expires_at < ry_now() LIMIT :limit)
RETURNING run_id, idx, kind;

-- name: count_recoveries
UPDATE runs SET recovery_attempts = recovery_attempts + 1, updated_at = ry_now()
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('QUEUED', 'RUNNING', 'PAUSED');

-- name: runs_over_recovery
SELECT id, recovery_attempts, max_recovery_attempts FROM runs
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('QUEUED', 'RUNNING', 'PAUSED')
  AND recovery_attempts > max_recovery_attempts;

-- name: run_traces
-- What the run spans of runs this process just ended (a cancel, a recovery's crash) are
-- recorded from, where it traces: a batch of runs at a time.
SELECT id, workflow, options, error FROM runs
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: crash_run
UPDATE runs SET status = 'CRASHED', error = :error, finished_at = ry_now(),
  updated_at = ry_now(), waiting_for = NULL
WHERE id = :run_id;

-- name: crash_items
UPDATE items SET state = 'failed', error = :error, owner = NULL, lease_expires_at = NULL,
  finished_at = ry_now(), waiting_for = NULL
WHERE run_id = :run_id AND kind IN ('input', 'map') AND state IN ('queued', 'processing');

-- name: select_runs_for_action
SELECT id FROM runs
WHERE status IN (SELECT value FROM json_each(:statuses))
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:prefix IS NULL OR id LIKE :prefix ESCAPE '\')
  AND (:url_prefix IS NULL OR (workflow = 'http'
    AND substr(json_extract(options, '$.target_url'), 1, length(:url_prefix)) = :url_prefix))
  AND (:task_id IS NULL OR task_id = :task_id)
  AND (:schedule_id IS NULL OR schedule_id = :schedule_id)
ORDER BY id;

-- name: cancel_run
UPDATE runs SET status = 'CANCELED', finished_at = ry_now(), updated_at = ry_now(),
  waiting_for = NULL,
  error = json_object('code', 'canceled', 'message', 'the run was canceled')
WHERE id = :run_id;

-- name: cancel_items
UPDATE items SET state = 'failed', owner = NULL, lease_expires_at = NULL, epoch = epoch + 1,
  error = json_object('code', 'canceled', 'message', 'the run was canceled'),
  finished_at = ry_now(), waiting_for = NULL
WHERE run_id = :run_id AND kind IN ('input', 'map') AND state IN ('queued', 'processing');

-- name: pause_run
UPDATE runs SET status = 'PAUSED', updated_at = ry_now() WHERE id = :run_id;

-- name: hold_items
-- A paused run's inputs leave the claimable set (those a worker runs now too: it hands
-- them back at its next step, and they stay held).
UPDATE items SET parked = 2
WHERE run_id = :run_id AND kind = 'input' AND state IN ('queued', 'processing');

-- name: release_items
-- Resumed: a held input is ready, or parked until its due time (a sleep).
UPDATE items SET parked = CASE WHEN due_at > ry_now() THEN 1 ELSE 0 END
WHERE run_id = :run_id AND parked = 2;

-- name: delete_failed_steps
DELETE FROM steps WHERE run_id = :run_id AND status = 'failed'
  AND iteration = (SELECT iteration FROM runs WHERE id = :run_id);

-- name: resume_items
UPDATE items SET state = 'queued', error = NULL, generation = generation + 1,
  due_at = ry_now(), finished_at = NULL, waiting_for = NULL, parked = 0
WHERE run_id = :run_id AND state = 'failed' AND kind IN ('input', 'map');

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
  updated_at = ry_now()
WHERE id = :run_id;

-- name: drop_unfinished_sync_states
-- Before a continue: the state an input saved in an iteration it did not complete
-- (failed, canceled) is not the next iteration's: a failed iteration does not
-- advance the sync.
DELETE FROM sync_states WHERE run_id = :run_id
  AND iteration = (SELECT iteration FROM runs WHERE id = :run_id)
  AND item_idx IN (SELECT idx FROM items WHERE run_id = :run_id AND kind = 'input'
    AND state <> 'completed');

-- name: continue_items
UPDATE items SET state = 'queued', result = NULL, error = NULL, iteration = iteration + 1,
  generation = 0, attempt = 0, last_position = 0, due_at = ry_now(), owner = NULL,
  lease_expires_at = NULL, epoch = epoch + 1, started_at = NULL, finished_at = NULL,
  waiting_for = NULL, parked = 0
WHERE run_id = :run_id AND kind = 'input' AND state <> 'discarded';

-- name: continue_run
UPDATE runs SET status = 'QUEUED', iteration = iteration + 1, result = NULL, error = NULL,
  finished_at = NULL, deadline_at = NULL, recovery_attempts = 0, progress = NULL,
  progress_message = NULL, output_count = 0, truncated = 0,
  updated_at = ry_now()
WHERE id = :run_id;

-- name: last_step_position
SELECT max(position) AS position FROM steps
WHERE run_id = :run_id AND iteration = :iteration;

-- name: fork_run
-- No row when new_id exists: a fork that raced another with the same id returns that
-- run (the insert waits for the other's commit, then does nothing).
INSERT INTO runs (id, workflow, workflow_version, kind, mode, status, priority, input_count,
  item_count, task_id, parent_id, fork_position, sync_mode, max_results, options, flow_key,
  timeout_s, max_recovery_attempts, has_on_failure)
SELECT :new_id, workflow, :version, kind, mode, 'QUEUED', priority, input_count,
  input_count, task_id, id, :position, sync_mode, max_results, :options, flow_key,
  timeout_s, max_recovery_attempts, has_on_failure
FROM runs WHERE id = :source_id
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: fork_items
INSERT INTO items (run_id, idx, kind, wref, input, custom_data, state, error, priority,
  flow_key, last_position, due_at)
SELECT :new_id, idx, 'input', :wref, coalesce(:input, input), custom_data,
  CASE WHEN state = 'discarded' THEN 'discarded' ELSE 'queued' END,
  CASE WHEN state = 'discarded' THEN error END, priority, flow_key, :position, ry_now()
FROM items WHERE run_id = :source_id AND kind = 'input';

-- name: fork_steps
INSERT INTO steps (run_id, item_idx, iteration, position, name, kind, status, result, error,
  attempts, started_at, completed_at)
SELECT :new_id, item_idx, 1, position, name, kind, status, result, error, attempts,
  started_at, completed_at
FROM steps
WHERE run_id = :source_id AND iteration = :iteration AND position < :position
  AND status = 'completed';

-- name: fork_outputs
INSERT INTO outputs (run_id, item_idx, iteration, position, key, data, created_at)
SELECT :new_id, item_idx, 1, position, key, data, created_at
FROM outputs
WHERE run_id = :source_id AND iteration = :iteration AND position < :position
ORDER BY id;

-- name: get_run
-- With the run's input when it has exactly one (its item 0).
SELECT r.*, (SELECT i.input FROM items i WHERE i.run_id = r.id AND i.idx = 0
              AND r.input_count = 1) AS input
FROM runs r WHERE r.id = :id;

-- name: run_statuses
SELECT id, status FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: list_runs_desc
-- Runs lists walk an index in list order and stop after the page (runs_created here; by
-- status and by workflow below, one walk per status, merged): a page costs what it
-- holds, not what the history holds. The time bound and the cursor are one row
-- comparison, which an index range serves whatever the parameters.
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND r.created_at >= coalesce(:created_after, -9e999)
  AND (r.created_at, r.id) < (min(coalesce(:after_at, 9e999), coalesce(:created_before, 9e999)),
    CASE WHEN coalesce(:after_at, 9e999) < coalesce(:created_before, 9e999) THEN :after_id ELSE '' END)
ORDER BY r.created_at DESC, r.id DESC LIMIT :limit;

-- name: list_runs_asc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND r.created_at < coalesce(:created_before, 9e999)
  AND (r.created_at, r.id) > (max(coalesce(:after_at, -9e999), coalesce(:created_after, -9e999)),
    CASE WHEN coalesce(:after_at, -9e999) > coalesce(:created_after, -9e999) THEN :after_id ELSE '' END)
ORDER BY r.created_at ASC, r.id ASC LIMIT :limit;

-- Runs lists sorted by status, started_at or finished_at (created_at: list_runs_*)
-- walk an index on the sort key in list order and stop after the page, as
-- list_runs_* do (runs_status; runs_started_key and runs_finished_key, migration
-- 0011, on the time with one not yet set as infinity: last ascending, first
-- descending). The key, created_at and id make the order total, and the cursor
-- is one row comparison on them, which the index range serves. (+created_at: the
-- creation-time bounds are filters, never the index walked; the key's own bound
-- starts the walk, which a row comparison on an expression index does not.)
-- name: runs_sorted_by_status_desc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND +r.created_at >= coalesce(:created_after, -9e999)
  AND +r.created_at < coalesce(:created_before, 9e999)
  AND (r.status, r.created_at, r.id) < (coalesce(:after_text, '~'),
    coalesce(:after_at, 9e999), coalesce(:after_id, ''))
ORDER BY r.status DESC, r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: runs_sorted_by_status_asc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND +r.created_at >= coalesce(:created_after, -9e999)
  AND +r.created_at < coalesce(:created_before, 9e999)
  AND (r.status, r.created_at, r.id) > (coalesce(:after_text, ''),
    coalesce(:after_at, -9e999), coalesce(:after_id, ''))
ORDER BY r.status ASC, r.created_at ASC, r.id ASC
LIMIT :limit;

-- name: runs_sorted_by_started_desc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND +r.created_at >= coalesce(:created_after, -9e999)
  AND +r.created_at < coalesce(:created_before, 9e999)
  AND coalesce(r.started_at, 9e999) <= coalesce(:after_num, 9e999)
  AND (coalesce(r.started_at, 9e999), r.created_at, r.id) < (coalesce(:after_num, 9e999),
    coalesce(:after_at, 9e999), coalesce(:after_id, ''))
ORDER BY coalesce(r.started_at, 9e999) DESC, r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: runs_sorted_by_started_asc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND +r.created_at >= coalesce(:created_after, -9e999)
  AND +r.created_at < coalesce(:created_before, 9e999)
  AND coalesce(r.started_at, 9e999) >= coalesce(:after_num, -9e999)
  AND (coalesce(r.started_at, 9e999), r.created_at, r.id) > (coalesce(:after_num, -9e999),
    coalesce(:after_at, -9e999), coalesce(:after_id, ''))
ORDER BY coalesce(r.started_at, 9e999) ASC, r.created_at ASC, r.id ASC
LIMIT :limit;

-- name: runs_sorted_by_finished_desc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND +r.created_at >= coalesce(:created_after, -9e999)
  AND +r.created_at < coalesce(:created_before, 9e999)
  AND coalesce(r.finished_at, 9e999) <= coalesce(:after_num, 9e999)
  AND (coalesce(r.finished_at, 9e999), r.created_at, r.id) < (coalesce(:after_num, 9e999),
    coalesce(:after_at, 9e999), coalesce(:after_id, ''))
ORDER BY coalesce(r.finished_at, 9e999) DESC, r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: runs_sorted_by_finished_asc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND +r.created_at >= coalesce(:created_after, -9e999)
  AND +r.created_at < coalesce(:created_before, 9e999)
  AND coalesce(r.finished_at, 9e999) >= coalesce(:after_num, -9e999)
  AND (coalesce(r.finished_at, 9e999), r.created_at, r.id) > (coalesce(:after_num, -9e999),
    coalesce(:after_at, -9e999), coalesce(:after_id, ''))
ORDER BY coalesce(r.finished_at, 9e999) ASC, r.created_at ASC, r.id ASC
LIMIT :limit;

-- name: list_runs_by_status_desc
-- One walk of runs_status per status asked for, merged.
SELECT x.* FROM json_each(:statuses) AS s JOIN runs AS x ON x.rowid IN (
  SELECT r.rowid FROM runs r
  WHERE r.status = s.value
    AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
    AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
    AND (:task_id IS NULL OR r.task_id = :task_id)
    AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
    AND (:mode IS NULL OR r.mode = :mode)
    AND r.created_at >= coalesce(:created_after, -9e999)
    AND (r.created_at, r.id) < (min(coalesce(:after_at, 9e999), coalesce(:created_before, 9e999)),
      CASE WHEN coalesce(:after_at, 9e999) < coalesce(:created_before, 9e999) THEN :after_id ELSE '' END)
  ORDER BY r.created_at DESC, r.id DESC LIMIT :limit)
ORDER BY x.created_at DESC, x.id DESC LIMIT :limit;

-- name: list_runs_by_status_asc
SELECT x.* FROM json_each(:statuses) AS s JOIN runs AS x ON x.rowid IN (
  SELECT r.rowid FROM runs r
  WHERE r.status = s.value
    AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
    AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
    AND (:task_id IS NULL OR r.task_id = :task_id)
    AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
    AND (:mode IS NULL OR r.mode = :mode)
    AND r.created_at < coalesce(:created_before, 9e999)
    AND (r.created_at, r.id) > (max(coalesce(:after_at, -9e999), coalesce(:created_after, -9e999)),
      CASE WHEN coalesce(:after_at, -9e999) > coalesce(:created_after, -9e999) THEN :after_id ELSE '' END)
  ORDER BY r.created_at ASC, r.id ASC LIMIT :limit)
ORDER BY x.created_at ASC, x.id ASC LIMIT :limit;

-- name: list_runs_by_workflow_desc
-- One walk of runs_workflow (workflow, status, ...) per status asked for (every
-- status when none is), merged.
SELECT x.* FROM json_each(:statuses) AS s JOIN runs AS x ON x.rowid IN (
  SELECT r.rowid FROM runs r
  WHERE r.workflow = :workflow AND r.status = s.value
    AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
    AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
    AND (:task_id IS NULL OR r.task_id = :task_id)
    AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
    AND (:mode IS NULL OR r.mode = :mode)
    AND r.created_at >= coalesce(:created_after, -9e999)
    AND (r.created_at, r.id) < (min(coalesce(:after_at, 9e999), coalesce(:created_before, 9e999)),
      CASE WHEN coalesce(:after_at, 9e999) < coalesce(:created_before, 9e999) THEN :after_id ELSE '' END)
  ORDER BY r.created_at DESC, r.id DESC LIMIT :limit)
ORDER BY x.created_at DESC, x.id DESC LIMIT :limit;

-- name: list_runs_by_workflow_asc
SELECT x.* FROM json_each(:statuses) AS s JOIN runs AS x ON x.rowid IN (
  SELECT r.rowid FROM runs r
  WHERE r.workflow = :workflow AND r.status = s.value
    AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
    AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
    AND (:task_id IS NULL OR r.task_id = :task_id)
    AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
    AND (:mode IS NULL OR r.mode = :mode)
    AND r.created_at < coalesce(:created_before, 9e999)
    AND (r.created_at, r.id) > (max(coalesce(:after_at, -9e999), coalesce(:created_after, -9e999)),
      CASE WHEN coalesce(:after_at, -9e999) > coalesce(:created_after, -9e999) THEN :after_id ELSE '' END)
  ORDER BY r.created_at ASC, r.id ASC LIMIT :limit)
ORDER BY x.created_at ASC, x.id ASC LIMIT :limit;

-- name: list_items
SELECT * FROM items
WHERE run_id = :run_id AND kind IN (SELECT value FROM json_each(:kinds))
  AND (:state IS NULL OR state = :state)
ORDER BY idx LIMIT :limit OFFSET :offset;

-- name: list_steps
SELECT * FROM steps WHERE run_id = :run_id AND (:iteration IS NULL OR iteration = :iteration)
ORDER BY iteration, item_idx, position;

-- name: list_attempts
-- Each failed attempt with the attempt of the workflow's body it belongs to (1 + the
-- body's attempts that failed before it, in the item's iteration and generation; a body
-- attempt's own number for position 0).
SELECT a.*, 1 + (SELECT count(*) FROM attempts b
                 WHERE b.run_id = a.run_id AND b.item_idx = a.item_idx
                   AND b.iteration = a.iteration AND b.generation = a.generation
                   AND b.position = 0 AND b.id < a.id) AS workflow_attempt
FROM attempts a WHERE a.run_id = :run_id ORDER BY a.id;

-- name: list_outputs
SELECT * FROM outputs
WHERE run_id = :run_id AND id > :after_id AND (:iteration IS NULL OR iteration = :iteration)
ORDER BY id LIMIT :limit;

-- name: list_transitions
SELECT * FROM run_transitions WHERE run_id = :run_id ORDER BY id;

-- name: list_waiters
SELECT * FROM waiters WHERE event_id = :event_id ORDER BY created_at;

-- name: list_logs
SELECT * FROM logs WHERE run_id = :run_id AND id > :after_id ORDER BY id LIMIT :limit;

-- name: insert_api_key
INSERT INTO api_keys (id, name, digest, scopes) VALUES (:id, :name, :digest, :scopes)
RETURNING id, name, scopes, created_at, last_used_at, revoked_at;

-- name: list_api_keys
SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys
ORDER BY created_at, id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, ry_now()) WHERE id = :id
RETURNING id, name, scopes, created_at, last_used_at, revoked_at;

-- name: find_api_key
SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys
WHERE digest = :digest AND revoked_at IS NULL;

-- name: api_key_issued
SELECT 1 AS issued FROM api_keys WHERE digest = :digest;

-- name: touch_api_key
UPDATE api_keys SET last_used_at = ry_now() WHERE id = :id;

-- name: insert_task
INSERT INTO tasks (id, name, workflow, input, options)
VALUES (:id, :name, :workflow, :input, :options)
ON CONFLICT (id) DO NOTHING
RETURNING *;

-- name: get_task
SELECT * FROM tasks WHERE id = :id;

-- name: list_tasks
SELECT * FROM tasks WHERE (:after_id IS NULL OR id > :after_id)
ORDER BY id LIMIT :limit;

-- name: update_task
UPDATE tasks SET name = :name, workflow = :workflow, input = :input,
  options = :options, updated_at = ry_now()
WHERE id = :id
RETURNING *;

-- name: delete_task
DELETE FROM tasks WHERE id = :id RETURNING id;

-- name: usage
-- Purged runs' credits count too (retention keeps usage).
SELECT date(created_at, 'unixepoch') AS day, workflow, action, sum(amount) AS credits, count(*) AS charges
FROM (SELECT run_id, workflow, action, amount, created_at FROM credits
      UNION ALL SELECT NULL, workflow, action, amount, created_at FROM purged_credits)
WHERE created_at >= :since AND created_at < :until
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:run_id IS NULL OR run_id = :run_id)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- name: purgeable_runs
-- Runs that ended before :cutoff with nothing left to do: no item owned or still to run
-- (an on_failure hook runs after its run ended), no callback still to deliver. (A run
-- ends after it is created, so created_at < :cutoff lets the status index serve.)
SELECT r.id FROM runs r
WHERE r.status IN ('SUCCEEDED', 'PARTIAL_SUCCEEDED', 'FAILED', 'CANCELED', 'CRASHED', 'INVALID')
  AND r.created_at < :cutoff AND r.finished_at < :cutoff
  AND NOT EXISTS (SELECT 1 FROM items i WHERE i.run_id = r.id
                  AND (i.owner IS NOT NULL OR i.state IN ('queued', 'processing')))
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = r.id AND d.state = 'pending')
LIMIT :limit;

-- name: archive_purged_credits
INSERT INTO purged_credits (workflow, action, amount, created_at)
SELECT workflow, action, amount, created_at FROM credits
WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_credits
DELETE FROM credits WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_logs
DELETE FROM logs WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_outputs
DELETE FROM outputs WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_steps
DELETE FROM steps WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_attempts
DELETE FROM attempts WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_sync_states
DELETE FROM sync_states WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_schedule_fires
-- (a fire's record goes with its run; skipped and missed fires, which have none, stay)
DELETE FROM schedule_fires WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_waiters
DELETE FROM waiters WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_deliveries
DELETE FROM deliveries WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_transitions
DELETE FROM run_transitions WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_items
DELETE FROM items WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_runs
DELETE FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: purge_events
-- Of the :limit oldest stored events, those stored before :cutoff (ids grow with
-- time: reading the oldest first bounds the statement, even when none is old enough).
DELETE FROM events
WHERE id IN (SELECT id FROM events ORDER BY id LIMIT :limit)
  AND created_at < :cutoff;

-- name: live_workers
SELECT id, host, pid, concurrency, workflows, started_at, heartbeat_at FROM workers
WHERE stopped_at IS NULL AND heartbeat_at > ry_now() - :seen_within_s
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
WHERE id > :after_id AND at < ry_now() - 2
GROUP BY to_status;

-- name: last_transition
-- Where transitions_since starts: the newest transition at least two seconds old (a walk
-- back over the last two seconds' transitions).
SELECT id FROM run_transitions WHERE at < ry_now() - 2 ORDER BY id DESC LIMIT 1;

-- name: output_room
-- Whether a run with max_results may store one more output in this iteration (the run's
-- row locked: emits of its items take turns, so the count never passes the limit).
SELECT output_count < max_results AS room FROM runs WHERE id = :run_id;

-- name: insert_output_counted
-- (With a key, in an incremental run of a schedule: not if an earlier fire's run
-- emitted that key: a record is delivered once across a schedule's fires; a keyed
-- output carries its run's schedule_id, set by a trigger, index outputs_schedule_key.)
-- insert_output for a run with max_results, counted on the run when the row is new.
INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
SELECT :run_id, :idx, :iteration, :position, :key, :data
WHERE EXISTS (SELECT 1 FROM items WHERE run_id = :run_id AND idx = :idx AND owner = :owner AND epoch = :epoch)
  AND (:key IS NULL
    OR (SELECT sync_mode FROM runs WHERE id = :run_id) IS NOT 'incremental'
    OR NOT EXISTS (SELECT 1 FROM outputs o
    JOIN runs me ON me.id = :run_id AND me.sync_mode = 'incremental'
    WHERE o.schedule_id = me.schedule_id AND o.key = :key AND o.run_id <> me.id))
ON CONFLICT DO NOTHING
RETURNING id;

-- name: count_output
UPDATE runs SET output_count = output_count + 1 WHERE id = :run_id;

-- name: mark_truncated
UPDATE runs SET truncated = 1 WHERE id = :run_id;

-- name: recount_outputs
-- A fork's output count: the outputs it took over from its source.
UPDATE runs SET output_count = (SELECT count(*) FROM outputs WHERE run_id = :run_id)
WHERE id = :run_id;

-- name: sole_inputs
-- The input of each of these runs that has exactly one (a page of a runs list).
SELECT i.run_id, i.input FROM items i
WHERE i.run_id IN (SELECT value FROM json_each(:run_ids)) AND i.idx = 0;

-- name: worker_liveness
-- What proves this worker dead early (see migration 0009). (SQLite has no session lock.)
UPDATE workers SET host_id = :host_id, proc_started = :proc_started,
  lock_key = :lock_key, lock_at = CASE WHEN :lock_key IS NULL THEN NULL ELSE ry_now() END,
  stopped_at = NULL
WHERE id = :id;

-- name: workers_on_host
-- The other workers of this host (name, boot, pid namespace) not known to have stopped.
SELECT id, pid, proc_started FROM workers
WHERE host_id = :host_id AND stopped_at IS NULL AND id <> :id;

-- name: stop_dead_worker
UPDATE workers SET stopped_at = ry_now()
WHERE id = :id AND stopped_at IS NULL AND (:lock_key IS NULL OR lock_key = :lock_key)
RETURNING id;

-- name: requeue_owned
-- The items of workers known dead, as expire_leases re-queues those of expired leases.
UPDATE items SET owner = NULL, lease_expires_at = NULL, epoch = epoch + 1,
  parked = CASE WHEN parked = 2 THEN 2 ELSE 1 END,
  due_at = ry_now() + (abs(random()) % 1000) / 1000.0 * min(30.0, 0.25 * (1 << min(
    (SELECT recovery_attempts FROM runs WHERE id = items.run_id), 7)))
WHERE owner IS NOT NULL AND lease_expires_at IS NOT NULL
  AND owner IN (SELECT value FROM json_each(:ids))
RETURNING run_id, idx, kind, due_at;

-- name: run_leases
-- The items of a run in a worker's hands, with the lease each waits on and its worker.
SELECT i.idx, i.owner, i.lease_expires_at, w.heartbeat_at, w.stopped_at, ry_now() AS now
FROM items i LEFT JOIN workers w ON w.id = i.owner
WHERE i.run_id = :run_id AND i.owner IS NOT NULL AND i.lease_expires_at IS NOT NULL
ORDER BY i.lease_expires_at LIMIT 20;

-- Schedules (issue 20) -------------------------------------------------------------------

-- name: insert_schedule
INSERT INTO schedules (id, workflow, task_id, spec, paused, note, next_fire_at, due_at,
  remaining_actions)
VALUES (:id, :workflow, :task_id, :spec, :paused, :note, :next_fire_at,
  :due_at, :remaining_actions)
ON CONFLICT (id) DO NOTHING
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE id = :id;

-- name: lock_schedule
SELECT * FROM schedules WHERE id = :id;

-- name: list_schedules
SELECT * FROM schedules
WHERE (:after_id IS NULL OR id > :after_id)
  AND (:workflow IS NULL OR workflow = :workflow)
ORDER BY id LIMIT :limit;

-- name: update_schedule
UPDATE schedules SET workflow = :workflow, task_id = :task_id, spec = :spec,
  paused = :paused, note = :note, next_fire_at = :next_fire_at, due_at = :due_at,
  remaining_actions = :remaining_actions, updated_at = ry_now()
WHERE id = :id
RETURNING *;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id RETURNING id;

-- name: delete_schedule_fires
DELETE FROM schedule_fires WHERE schedule_id = :id;

-- name: claim_due_schedules
-- Due schedules, earliest first, each locked by one scheduler at a time: the others skip
-- it (SKIP LOCKED) and take the next ones. (SQLite: the write lock serializes.) With the status of the latest fire's run.
SELECT s.*, r.status AS last_status FROM schedules s
LEFT JOIN runs r ON r.id = s.last_run_id
WHERE s.paused = 0 AND s.due_at IS NOT NULL AND s.due_at <= :now
ORDER BY s.due_at LIMIT :limit
;

-- name: schedule_run_status
SELECT status FROM runs WHERE id = :id;

-- name: advance_schedule
UPDATE schedules SET next_fire_at = :next_fire_at, due_at = :due_at,
  last_run_id = :last_run_id, remaining_actions = :remaining_actions,
  fired = fired + :fired, skipped = skipped + :skipped,
  start_failed = start_failed + :failed, buffered = :buffered, paused = :paused,
  note = :note, updated_at = ry_now()
WHERE id = :id;

-- name: peek_due_schedules
-- What a pass is about to claim, or due within :ahead seconds (no lock): the scheduler
-- prepares their runs first.
SELECT id, workflow, task_id, spec FROM schedules
WHERE paused = 0 AND due_at IS NOT NULL AND due_at <= (SELECT ry_now()) + :ahead
ORDER BY due_at LIMIT :limit;

-- name: existing_fires
-- The fires already recorded for the schedules a pass claimed, from each one's next fire
-- time on (a backfill or a trigger may have recorded one): one walk of the primary key
-- per schedule.
SELECT f.schedule_id, f.fire_at
FROM json_each(:bounds) AS b
JOIN schedule_fires f ON f.schedule_id = json_extract(b.value, '$.id')
  AND f.fire_at >= json_extract(b.value, '$.lo') AND f.fire_at <= :hi;

-- name: record_fires
-- The fires of a pass (existing_fires told which are new), one row each of a JSON array.
-- (SQLite reads a JSON number to the nearest double only roughly: a time comes exactly as
-- the integers of its ratio, numerator _n over power of two _d.)
INSERT INTO schedule_fires (schedule_id, fire_at, kind, state, run_id, error)
SELECT json_extract(f.value, '$.schedule_id'),
  CAST(json_extract(f.value, '$.fire_at_n') AS REAL) / json_extract(f.value, '$.fire_at_d'),
  json_extract(f.value, '$.kind'), json_extract(f.value, '$.state'),
  json_extract(f.value, '$.run_id'), json_extract(f.value, '$.error')
FROM json_each(:fires) AS f WHERE true
ON CONFLICT (schedule_id, fire_at) DO NOTHING;

-- name: advance_schedules
-- advance_schedule for each schedule of a pass, one row each of a JSON array (times as
-- in record_fires).
UPDATE schedules SET
  next_fire_at = CAST(json_extract(v.value, '$.next_fire_at_n') AS REAL)
    / json_extract(v.value, '$.next_fire_at_d'),
  due_at = CAST(json_extract(v.value, '$.due_at_n') AS REAL) / json_extract(v.value, '$.due_at_d'),
  last_run_id = json_extract(v.value, '$.last_run_id'),
  remaining_actions = json_extract(v.value, '$.remaining_actions'),
  fired = fired + json_extract(v.value, '$.fired'),
  skipped = skipped + json_extract(v.value, '$.skipped'),
  start_failed = start_failed + json_extract(v.value, '$.failed'),
  buffered = json_extract(v.value, '$.buffered'), paused = json_extract(v.value, '$.paused'),
  note = json_extract(v.value, '$.note'), updated_at = ry_now()
FROM json_each(:schedules) AS v
WHERE schedules.id = json_extract(v.value, '$.id');

-- name: purge_runless_fires
-- Of the fires with no run (skipped, missed, failed to start), the :limit oldest
-- recorded before :cutoff (index schedule_fires_runless).
DELETE FROM schedule_fires
WHERE rowid IN (
  SELECT rowid FROM schedule_fires
  WHERE state IN ('skipped', 'missed', 'failed') AND created_at < :cutoff
  ORDER BY created_at LIMIT :limit);

-- name: skip_pending_fire
-- cancel_other against a fire whose run was never written, its scheduler gone (pending
-- for longer than a live one takes to start it): that fire is skipped, so that no sweep
-- starts it later.
UPDATE schedule_fires SET state = 'skipped', run_id = NULL
WHERE schedule_id = :schedule_id AND fire_at BETWEEN :lo AND :hi
  AND run_id = :run_id AND state = 'pending'
  AND created_at < ry_now() - :stale_s
  AND NOT EXISTS (SELECT 1 FROM runs WHERE id = :run_id)
RETURNING schedule_id;

-- name: set_fire_state
UPDATE schedule_fires SET state = :state, run_id = :run_id, error = :error
WHERE schedule_id = :schedule_id AND fire_at = :fire_at;

-- name: fire_started
-- A pending fire whose run now exists (no-op for a fire no longer pending).
UPDATE schedule_fires SET state = 'started'
WHERE schedule_id = :schedule_id AND fire_at = :fire_at AND state = 'pending';

-- name: fire_start_failed
UPDATE schedule_fires SET state = 'failed', error = :error
WHERE schedule_id = :schedule_id AND fire_at = :fire_at AND state = 'pending'
RETURNING schedule_id;

-- name: count_start_failed
-- (A failed start is no run to wait for: the next fire is not held back by it.)
UPDATE schedules SET start_failed = start_failed + 1,
  last_run_id = CASE WHEN last_run_id = :run_id THEN NULL ELSE last_run_id END
WHERE id = :id;

-- name: first_buffered_fire
SELECT * FROM schedule_fires
WHERE schedule_id = :schedule_id AND state = 'buffered'
ORDER BY fire_at LIMIT 1;

-- name: stale_pending_fires
-- Fires recorded by a scheduler that stopped before their run was written.
SELECT f.*, s.spec FROM schedule_fires f JOIN schedules s ON s.id = f.schedule_id
WHERE f.state = 'pending' AND f.created_at < :before
ORDER BY f.created_at LIMIT :limit;

-- name: get_fire
SELECT f.*, r.status AS run_status FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id
WHERE f.schedule_id = :schedule_id AND f.fire_at = :fire_at;

-- name: recent_fires
SELECT f.*, r.status AS run_status FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id
WHERE f.schedule_id = :schedule_id
ORDER BY f.fire_at DESC LIMIT :limit;

-- name: fires_between
SELECT f.*, r.status AS run_status FROM schedule_fires f LEFT JOIN runs r ON r.id = f.run_id
WHERE f.schedule_id = :schedule_id AND f.fire_at >= :start AND f.fire_at < :end
ORDER BY f.fire_at;

-- name: schedule_failed_runs
SELECT count(*) AS n FROM runs
WHERE schedule_id = :schedule_id AND status IN ('FAILED', 'CRASHED', 'INVALID');

-- name: next_schedule_due
SELECT min(due_at) AS at FROM schedules WHERE paused = 0 AND due_at IS NOT NULL;

-- name: schedule_sync_state
-- The sync state saved by the latest successful earlier run of the same schedule: a
-- schedule's fire is the next iteration of its sync (a failed fire does not advance it).
-- (The schedule's successful runs are walked newest first on runs_schedule_succeeded,
-- stopping at the first with a state.)
SELECT st.state FROM sync_states st
WHERE st.item_idx = :idx AND st.run_id = (
  SELECT r.id FROM runs r
  WHERE r.schedule_id = (SELECT me.schedule_id FROM runs me WHERE me.id = :run_id)
    AND r.status IN ('SUCCEEDED', 'PARTIAL_SUCCEEDED') AND r.id <> :run_id
    AND EXISTS (SELECT 1 FROM sync_states s WHERE s.run_id = r.id AND s.item_idx = :idx)
  ORDER BY r.finished_at DESC LIMIT 1)
ORDER BY st.iteration DESC LIMIT 1;

-- == callbacks (issue 21 item 1; see runyard.service.callbacks) ==

-- name: insert_run_callback
INSERT INTO run_callbacks (run_id, url, headers) VALUES (:run_id, :url, :headers)
ON CONFLICT (run_id) DO NOTHING;

-- name: callback_open_runs
-- Runs whose callback still has messages to write, with what the messages need; locked,
-- skipping those another worker holds (two workers never batch one run's outputs twice).
SELECT c.run_id, c.url, c.headers, c.output_cursor, c.stopped, r.status, r.input_count,
  r.schedule_id, r.workflow, r.result, r.error, r.credits, r.credits_by_action,
  r.finished_at
FROM run_callbacks c JOIN runs r ON r.id = c.run_id
WHERE c.open = 1
ORDER BY c.run_id
LIMIT :limit;

-- name: callback_outputs
SELECT id, item_idx, key, data, created_at FROM outputs
WHERE run_id = :run_id AND id > :after ORDER BY id LIMIT :limit;

-- name: callback_inputs
SELECT idx, custom_data, state, result, error FROM items
WHERE run_id = :run_id AND kind = 'input' ORDER BY idx;

-- name: advance_callback
UPDATE run_callbacks SET output_cursor = :cursor, open = :open WHERE run_id = :run_id;

-- name: insert_delivery
INSERT INTO deliveries (message_id, run_id, item_idx, url, headers, kind, body)
VALUES (:message_id, :run_id, :item_idx, :url, :headers, :kind, :body)
ON CONFLICT (message_id) DO NOTHING;

-- name: claim_deliveries
-- Due messages, leased to the caller: the lease is the next attempt time itself, so a
-- worker that dies mid-delivery leaves its messages due again once the lease is over.
UPDATE deliveries SET owner = :owner, attempts = attempts + 1,
  next_attempt_at = ry_now() + :lease_s
WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending'
             AND next_attempt_at <= ry_now()
             ORDER BY next_attempt_at LIMIT :limit)
RETURNING *;

-- name: next_delivery_due
SELECT min(next_attempt_at) - ry_now() AS wait_s FROM deliveries WHERE state = 'pending';

-- name: callback_work
-- Whether any run's callback is open, and when the next pending message is due (seconds
-- from now, None: none): the delivery loop's first look, a read, so that a deployment
-- without callbacks writes nothing when runs end.
SELECT EXISTS (SELECT 1 FROM run_callbacks WHERE open = 1) AS open_runs,
  (SELECT min(next_attempt_at) - ry_now() FROM deliveries WHERE state = 'pending') AS wait_s;

-- name: insert_delivery_attempt
-- An attempt, recorded if the caller still holds the message (fenced on the owner and
-- the attempt number); sent before finish_delivery, which clears the owner.
INSERT INTO delivery_attempts (delivery_id, run_id, attempt, status_code, latency_ms, error,
  next_attempt_at)
SELECT id, run_id, :attempt, :status_code, :latency_ms, :error,
  CASE WHEN :state = 'pending' AND state = 'pending'
    THEN ry_now() + :delay_s END
FROM deliveries WHERE id = :id AND owner = :owner AND attempts = :attempt;

-- name: finish_delivery
-- An attempt's outcome, fenced on the owner and the attempt number. A message stopped
-- while in flight (a 410 to another message of its run) stays stopped unless delivered.
UPDATE deliveries SET state = CASE WHEN state = 'stopped' AND :state = 'pending'
    THEN 'stopped' ELSE :state END,
  owner = NULL, last_status = :status_code, last_error = :error,
  next_attempt_at = CASE WHEN :state = 'pending' AND state = 'pending'
    THEN ry_now() + :delay_s ELSE next_attempt_at END,
  delivered_at = CASE WHEN :state = 'delivered' THEN ry_now() END
WHERE id = :id AND owner = :owner AND attempts = :attempt
RETURNING id;

-- name: stop_run_deliveries
-- A 410: nothing more to this URL for this run. A message in flight keeps its owner, so
-- that its attempt is still recorded (finish_delivery keeps it stopped).
UPDATE deliveries SET state = 'stopped'
WHERE run_id = :run_id AND url = :url AND state = 'pending';

-- name: stop_run_callback
UPDATE run_callbacks SET stopped = 1 WHERE run_id = :run_id;

-- name: stop_schedule_callback
UPDATE schedules SET spec = :spec WHERE id = :id;

-- name: list_deliveries
SELECT id, message_id, run_id, item_idx, url, kind, state, attempts, next_attempt_at,
  last_status, last_error, created_at, delivered_at
FROM deliveries WHERE run_id = :run_id ORDER BY id LIMIT :limit;

-- name: list_delivery_attempts
SELECT delivery_id, attempt, status_code, latency_ms, error, next_attempt_at, at
FROM delivery_attempts WHERE run_id = :run_id ORDER BY delivery_id, id;

-- name: redeliver
UPDATE deliveries SET state = 'pending', owner = NULL, next_attempt_at = ry_now()
WHERE id = :id AND run_id = :run_id
RETURNING id;

-- name: webhook_secrets
SELECT id, secret, created_at, expires_at FROM webhook_secrets
WHERE expires_at IS NULL OR expires_at > ry_now() ORDER BY id DESC;

-- name: insert_webhook_secret
INSERT INTO webhook_secrets (secret) VALUES (:secret) RETURNING id;

-- name: insert_first_webhook_secret
-- The first secret, unless another process stored one meanwhile.
INSERT INTO webhook_secrets (secret)
SELECT :secret WHERE NOT EXISTS (SELECT 1 FROM webhook_secrets
                                   WHERE expires_at IS NULL OR expires_at > ry_now());

-- name: retire_webhook_secrets
UPDATE webhook_secrets SET expires_at = ry_now() + :grace_s
WHERE expires_at IS NULL AND id <> :keep;

-- name: purge_run_callbacks
DELETE FROM run_callbacks WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: purge_delivery_attempts
DELETE FROM delivery_attempts WHERE run_id IN (SELECT value FROM json_each(:ids));

-- ---------------------------------------------------------------------------------------
-- The dashboard's overview (issue 22, store/overview.py). Each read is bounded whatever
-- the history holds: counts stop at a cap, the ended runs are a range of an index on the
-- finish time, the leases a page of items_lease.

-- name: overview_open_runs
-- Runs not ended, by status, each count a range of runs_status that stops after 100,001
-- rows (service/overview.py OVERVIEW_COUNT_CAP + 1). Each status and the bound are written
-- out, as on PostgreSQL (where parameters there make the planner scan every run).
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
                         AND r.status = 'SCHEDULED' LIMIT 100001)) AS scheduled,
  (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.workflow = w.name
                         AND r.status = 'QUEUED' LIMIT 100001)) AS queued,
  (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.workflow = w.name
                         AND r.status = 'RUNNING' LIMIT 100001)) AS running,
  (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.workflow = w.name
                         AND r.status = 'PAUSED' LIMIT 100001)) AS paused
FROM (SELECT DISTINCT name FROM workflows) AS w
ORDER BY 1;

-- name: overview_ended_runs
-- Runs that ended in [since, until), by bucket of :bucket_s seconds and status: a range of
-- runs_finished_key (its expression, exactly), whose size is what ended in the window.
SELECT CAST(coalesce(finished_at, 9e999) / :bucket_s AS INTEGER) AS bucket, status, count(*) AS n
FROM runs
WHERE coalesce(finished_at, 9e999) >= :since AND coalesce(finished_at, 9e999) < :until
GROUP BY 1, 2;

-- name: overview_leases
-- Items held by a worker now, with their run's workflow: a page of items_lease.
SELECT i.owner, i.run_id, i.idx, i.name, i.started_at, i.lease_expires_at, r.workflow
FROM items i JOIN runs r ON r.id = i.run_id
WHERE i.owner IS NOT NULL
ORDER BY i.lease_expires_at
LIMIT :limit;

-- ---------------------------------------------------------------------------------------
-- The dashboard's sessions (issue 22, store/admin.py): a signed-in browser names its key
-- by id; the session is signed with the key's digest, which never leaves the server.

-- name: find_api_key_by_id
SELECT id, name, scopes, created_at, last_used_at, revoked_at, digest FROM api_keys
WHERE id = :id AND revoked_at IS NULL;

-- Runs lists by schedule and by task (migration 0018). The id is bounded by a range and
-- leads the walk's order (as list_runs_by_status_ does), so that no plan walks runs_created
-- and filters on it.
-- name: list_runs_by_schedule_desc
-- A schedule's runs: one walk of runs_schedule (schedule_id, created_at, id) in list order.
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND r.schedule_id >= :schedule_id AND r.schedule_id <= :schedule_id
  AND (:mode IS NULL OR r.mode = :mode)
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND r.created_at >= coalesce(:created_after, -9e999)
  AND (r.created_at, r.id) < (min(coalesce(:after_at, 9e999), coalesce(:created_before, 9e999)),
    CASE WHEN coalesce(:after_at, 9e999) < coalesce(:created_before, 9e999) THEN :after_id ELSE '' END)
ORDER BY r.schedule_id DESC, r.created_at DESC, r.id DESC LIMIT :limit;

-- name: list_runs_by_task_desc
-- A task's runs: one walk of runs_task (task_id, created_at, id) in list order.
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND r.task_id >= :task_id AND r.task_id <= :task_id
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND r.created_at >= coalesce(:created_after, -9e999)
  AND (r.created_at, r.id) < (min(coalesce(:after_at, 9e999), coalesce(:created_before, 9e999)),
    CASE WHEN coalesce(:after_at, 9e999) < coalesce(:created_before, 9e999) THEN :after_id ELSE '' END)
ORDER BY r.task_id DESC, r.created_at DESC, r.id DESC LIMIT :limit;

-- name: list_runs_by_schedule_asc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND (:task_id IS NULL OR r.task_id = :task_id)
  AND r.schedule_id >= :schedule_id AND r.schedule_id <= :schedule_id
  AND (:mode IS NULL OR r.mode = :mode)
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND r.created_at < coalesce(:created_before, 9e999)
  AND (r.created_at, r.id) > (max(coalesce(:after_at, -9e999), coalesce(:created_after, -9e999)),
    CASE WHEN coalesce(:after_at, -9e999) > coalesce(:created_after, -9e999) THEN :after_id ELSE '' END)
ORDER BY r.schedule_id ASC, r.created_at ASC, r.id ASC LIMIT :limit;

-- name: list_runs_by_task_asc
SELECT r.* FROM runs r
WHERE (:statuses IS NULL OR r.status IN (SELECT value FROM json_each(:statuses)))
  AND (:ids IS NULL OR r.id IN (SELECT value FROM json_each(:ids)))
  AND (:prefix IS NULL OR r.id LIKE :prefix ESCAPE '\')
  AND r.task_id >= :task_id AND r.task_id <= :task_id
  AND (:schedule_id IS NULL OR r.schedule_id = :schedule_id)
  AND (:mode IS NULL OR r.mode = :mode)
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND r.created_at < coalesce(:created_before, 9e999)
  AND (r.created_at, r.id) > (max(coalesce(:after_at, -9e999), coalesce(:created_after, -9e999)),
    CASE WHEN coalesce(:after_at, -9e999) > coalesce(:created_after, -9e999) THEN :after_id ELSE '' END)
ORDER BY r.task_id ASC, r.created_at ASC, r.id ASC LIMIT :limit;
