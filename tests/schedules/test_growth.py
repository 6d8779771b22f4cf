"""What keeps schedules bounded as their fires pile up, on both backends: fire records
without a run (skipped, missed, failed to start) are purged past the retention of runs;
the sync state a fire starts from and the check of a key emitted by an earlier fire each
walk an index and touch a handful of rows at a seeded history of 20,000 fires (plans read
as tests/store/test_scale.py reads them)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runyard import Context, Runyard
from runyard.errors import InvalidInput
from runyard.service import ScheduleSpec
from runyard.service.scheduler import Scheduler
from runyard.store import open_store
from runyard.store.base import Store
from tests.conftest import BACKENDS, pg_database, raw_sql

DAY = 86400.0


def _define(yard: Runyard) -> None:
    @yard.workflow
    async def tick(ctx: Context, tag: Any = None) -> Any:
        return tag


async def _paused_schedule(yard: Runyard) -> str:
    s, _ = await yard.create_schedule(
        ScheduleSpec(cron="* * * * *", workflow="tick", overlap="allow_all", paused=True)
    )
    return s.id


def _add_fires(yard: Runyard, sid: str, rows: list[tuple[float, str, str | None, float]]) -> None:
    """Fire rows (fire_at, state, run_id, created_at), as a scheduler records them."""
    for fire_at, state, run_id, created_at in rows:
        raw_sql(
            yard.core.settings.database_url,
            "INSERT INTO schedule_fires (schedule_id, fire_at, kind, state, run_id, created_at)"
            " VALUES (%s, %s, 'cron', %s, %s, %s)",
            (sid, fire_at, state, run_id, created_at),
        )


def _states(yard: Runyard, sid: str) -> list[tuple[float, str]]:
    rows = raw_sql(
        yard.core.settings.database_url,
        "SELECT fire_at, state FROM schedule_fires WHERE schedule_id = %s ORDER BY fire_at",
        (sid,),
    )
    return [(float(r[0]), str(r[1])) for r in rows]


def test_fires_without_a_run_are_purged_past_the_retention_of_runs(yard: Runyard) -> None:
    """Skipped, missed and failed fires older than the retention go, in batches; recent
    ones and fires with a run (they go with their run) stay."""
    _define(yard)

    async def main() -> None:
        sid = await _paused_schedule(yard)
        now = time.time()
        old, recent = now - 40 * DAY, now - 1 * DAY
        rows: list[tuple[float, str, str | None, float]] = []
        for i in range(12):  # old and without a run: purged
            state = ("skipped", "missed", "failed")[i % 3]
            rid = f"{sid}@{i}" if state == "failed" else None
            rows.append((1000.0 + i, state, rid, old))
        rows += [
            (2000.0, "started", f"{sid}@2000000", old),  # (goes with its run)
            (2001.0, "pending", f"{sid}@2001000", old),
            (2002.0, "buffered", f"{sid}@2002000", old),
            (3000.0, "skipped", None, recent),
            (3001.0, "missed", None, recent),
        ]
        _add_fires(yard, sid, rows)
        kept = [(2000.0, "started"), (2001.0, "pending"), (2002.0, "buffered")]
        kept += [(3000.0, "skipped"), (3001.0, "missed")]

        assert await yard.purge_schedule_fires(batch=5, max_batches=1) == 5
        assert len(_states(yard, sid)) == 17 - 5
        assert await yard.purge_schedule_fires(batch=5) == 7  # (two batches, the last short)
        assert _states(yard, sid) == kept
        assert await yard.purge_schedule_fires() == 0
        # A shorter retention reaches the recent ones.
        assert await yard.purge_schedule_fires(older_than_days=0.5) == 2
        assert _states(yard, sid) == kept[:3]
        for bad, field in ((float("nan"), "older_than_days"), (0, "batch")):
            with pytest.raises(InvalidInput) as info:
                if field == "batch":
                    await yard.purge_schedule_fires(batch=int(bad))
                else:
                    await yard.purge_schedule_fires(older_than_days=bad)
            assert info.value.details[0]["field"] == field

    asyncio.run(main())


def test_every_scheduler_purges_now_and_then(yard: Runyard) -> None:
    """A scheduler's pass purges old fire records once its purge is due (no leader), and
    leaves them alone until then."""
    _define(yard)

    async def main() -> None:
        sid = await _paused_schedule(yard)
        old = time.time() - 40 * DAY
        _add_fires(yard, sid, [(1000.0 + i, "skipped", None, old) for i in range(3)])
        scheduler = Scheduler(yard)
        scheduler.next_purge = time.monotonic() + 3600
        await scheduler.tick()
        assert len(_states(yard, sid)) == 3
        scheduler.next_purge = 0.0
        await scheduler.tick()
        assert _states(yard, sid) == []
        assert scheduler.next_purge > time.monotonic()

    asyncio.run(main())


# -- plans at a seeded history -------------------------------------------------------------

#: Fires of the schedule under test (each a SUCCEEDED incremental run with a sync state
#: and a keyed output), fires of another schedule emitting one shared key, and fire
#: records without a run (recent: none to purge).
FIRES, OTHERS, RUNLESS = 20_000, 20_000, 20_000
#: Rows a query may touch at that history.
FEW = 50

SEED = {
    "postgres": [
        """INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             schedule_id, sync_mode, created_at, started_at, finished_at)
           SELECT 'big@' || g, 'wf', '1', 'SUCCEEDED', 1, 1, 'big', 'incremental',
                  runyard_now() - 86400 + g, runyard_now() - 86400 + g,
                  runyard_now() - 86400 + g + 0.5
           FROM generate_series(1, %(n)s) AS g""",
        """INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             schedule_id, sync_mode, created_at, started_at, finished_at)
           SELECT 'other@' || g, 'wf', '1', 'SUCCEEDED', 1, 1, 'other', 'incremental',
                  runyard_now() - 86400 + g, runyard_now() - 86400 + g,
                  runyard_now() - 86400 + g + 0.5
           FROM generate_series(1, %(m)s) AS g""",
        """INSERT INTO sync_states (run_id, item_idx, iteration, state)
           SELECT 'big@' || g, 0, 1, g::text FROM generate_series(1, %(n)s) AS g""",
        """INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
           SELECT 'big@' || g, 0, 1, 0, 'k-' || g, '{}' FROM generate_series(1, %(n)s) AS g""",
        """INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
           SELECT 'other@' || g, 0, 1, 0, 'shared', '{}' FROM generate_series(1, %(m)s) AS g""",
        """INSERT INTO schedule_fires (schedule_id, fire_at, kind, state, run_id)
           SELECT 'big', g, 'cron', 'started', 'big@' || g FROM generate_series(1, %(n)s) AS g""",
        """INSERT INTO schedule_fires (schedule_id, fire_at, kind, state)
           SELECT 'other', g, 'cron', 'skipped' FROM generate_series(1, %(r)s) AS g""",
        """INSERT INTO schedules (id, workflow, spec, next_fire_at, due_at)
           SELECT 's' || g, 'wf', '{}', runyard_now() + g, runyard_now() + g
           FROM generate_series(1, %(m)s) AS g""",
        """INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             schedule_id, sync_mode)
           VALUES ('big@now', 'wf', '1', 'RUNNING', 1, 1, 'big', 'incremental')""",
        """INSERT INTO items (run_id, idx, kind, wref, state, owner, epoch)
           VALUES ('big@now', 0, 'input', 'wf@1', 'processing', 'w1', 1)""",
    ],
    "sqlite": [
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n)
           INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             schedule_id, sync_mode, created_at, started_at, finished_at)
           SELECT 'big@' || g, 'wf', '1', 'SUCCEEDED', 1, 1, 'big', 'incremental',
                  ry_now() - 86400 + g, ry_now() - 86400 + g, ry_now() - 86400 + g + 0.5
           FROM s""",
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :m)
           INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             schedule_id, sync_mode, created_at, started_at, finished_at)
           SELECT 'other@' || g, 'wf', '1', 'SUCCEEDED', 1, 1, 'other', 'incremental',
                  ry_now() - 86400 + g, ry_now() - 86400 + g, ry_now() - 86400 + g + 0.5
           FROM s""",
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n)
           INSERT INTO sync_states (run_id, item_idx, iteration, state)
           SELECT 'big@' || g, 0, 1, CAST(g AS TEXT) FROM s""",
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n)
           INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
           SELECT 'big@' || g, 0, 1, 0, 'k-' || g, '{}' FROM s""",
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :m)
           INSERT INTO outputs (run_id, item_idx, iteration, position, key, data)
           SELECT 'other@' || g, 0, 1, 0, 'shared', '{}' FROM s""",
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n)
           INSERT INTO schedule_fires (schedule_id, fire_at, kind, state, run_id)
           SELECT 'big', g, 'cron', 'started', 'big@' || g FROM s""",
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :r)
           INSERT INTO schedule_fires (schedule_id, fire_at, kind, state)
           SELECT 'other', g, 'cron', 'skipped' FROM s""",
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :m)
           INSERT INTO schedules (id, workflow, spec, next_fire_at, due_at)
           SELECT 's' || g, 'wf', '{}', ry_now() + g, ry_now() + g FROM s""",
        """INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             schedule_id, sync_mode)
           VALUES ('big@now', 'wf', '1', 'RUNNING', 1, 1, 'big', 'incremental')""",
        """INSERT INTO items (run_id, idx, kind, wref, state, owner, epoch)
           VALUES ('big@now', 0, 'input', 'wf@1', 'processing', 'w1', 1)""",
    ],
}

PARAMS: dict[str, Any] = {
    "run_id": "big@now",
    "idx": 0,
    "iteration": 1,
    "position": 0,
    "data": "{}",
    "owner": "w1",
    "epoch": 1,
    "schedule_id": "big",
    "limit": 500,
    "ahead": 0.0,
    "bounds": '[{"id": "big", "lo": 1}, {"id": "s7", "lo": 1}]',
    "hi": 10.0,
    "lo": 4.999,
    "stale_s": 10.0,
}

#: Each query with the key it is given (None: none), and the index it must walk.
PLANS: dict[str, tuple[str | None, str]] = {
    "schedule_sync_state": (None, "runs_schedule_succeeded"),
    "insert_output": ("shared", "outputs_schedule_key"),  # another schedule's key
    "insert_output_counted": ("k-7", "outputs_schedule_key"),  # an earlier fire's key
    "purge_runless_fires": (None, "schedule_fires_runless"),
    "peek_due_schedules": (None, "schedules_due"),  # (none due of 20,000)
    "claim_due_schedules": (None, "schedules_due"),
    "existing_fires": (None, "schedule_fires_pkey"),  # (the fires of two schedules)
    "skip_pending_fire": (None, "schedule_fires_pkey"),  # (SQLite: its autoindex)
}


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest,
    pg_template: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Store]:
    """One database per backend with a long schedule history (statistics of the empty
    tables, as an analyze before a burst leaves them: the planner's worst case)."""

    def seed(url: str) -> Store:
        store = open_store(url)
        conn = store.connect()
        try:
            conn.execute("ANALYZE")
            with store.transaction(conn, write=True, pipeline=False) as tx:
                for sql in SEED[store.backend]:
                    tx.cursor.execute(sql, {"n": FIRES, "m": OTHERS, "r": RUNLESS})
        finally:
            store.close_connection(conn)
        return store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('growth') / 'runyard.db'}"
        open_store(url).upgrade()
        store = seed(url)
        yield store
        store.close()
        return
    assert pg_template is not None
    with pg_database(pg_template) as url:
        store = seed(url)
        yield store
        store.close()


def _params(store: Store, key: str | None) -> dict[str, Any]:
    now = time.time()
    return {**PARAMS, "key": key, "cutoff": now - 30 * DAY, "now": now, "run_id": "big@now"}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_schedule_reads_walk_an_index_at_a_long_history(seeded: Store, name: str) -> None:
    store = seeded
    key, index = PLANS[name]
    if store.backend == "sqlite" and index == "schedule_fires_pkey":
        index = "sqlite_autoindex_schedule_fires_1"
    conn = store.connect()
    try:
        if store.backend == "postgres":
            with conn.transaction(force_rollback=True):
                conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                row = conn.execute(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + store.queries[name], _params(store, key)
                ).fetchone()
            nodes = list(_nodes(row["QUERY PLAN"][0]["Plan"]))
            scans = [n for n in nodes if "Relation Name" in n]
            for n in scans:
                assert n["Node Type"] != "Seq Scan", (name, n["Relation Name"])
            touched = sum(
                (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
                for n in scans
            )
            assert touched <= FEW, (name, touched)
            assert index in {n.get("Index Name") for n in nodes}, (name, nodes)
        else:
            params = {
                k: json.dumps(v) if isinstance(v, list) else v
                for k, v in _params(store, key).items()
            }
            plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + store.queries[name], params)]
            # (a SCAN of a virtual table is json_each's, of a constant row an INSERT's)
            full = [
                ln
                for ln in plan
                if ln.startswith("SCAN") and "CONSTANT ROW" not in ln and "VIRTUAL" not in ln
            ]
            assert full == [], (name, plan)
            assert any(index in line for line in plan), (name, plan)
    finally:
        store.close_connection(conn)


def test_the_indexed_reads_answer_as_before(seeded: Store) -> None:
    """At that history: the state is the latest successful fire's; a key an earlier fire
    emitted is not stored again, a key only another schedule emitted is."""
    store = seeded
    conn = store.connect()
    try:
        with store.transaction(conn, write=True) as tx:
            row = tx.q1("schedule_sync_state", {"run_id": "big@now", "idx": 0})
            assert row is not None and row["state"] == str(FIRES)
            for position, (key, stored) in enumerate((("k-7", 0), ("shared", 1), ("new", 1))):
                params = _params(store, key) | {"position": 1 + position}
                assert tx.exec("insert_output", params) == stored, key
            assert tx.q1("schedule_sync_state", {"run_id": "other@1", "idx": 0}) is None
            raise _Rollback()
    except _Rollback:
        pass
    finally:
        store.close_connection(conn)


class _Rollback(Exception):
    """Leaves the seeded history as it was."""
