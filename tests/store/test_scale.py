"""Claiming, waking, listing and counting cost what a batch or a page costs, not what the
backlog or the history holds: the plan of every hot query at a seeded backlog (100,000
queued runs, 10,000 sleeping ones, 20,000 ended ones; a third of them of one schedule, one
in 2,000 of a task) walks an index and touches a
handful of rows, on both backends. And claims stay right at a backlog: each item once,
best first, paused and sleeping runs left alone."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runyard.models import ItemState, NewInput, NewRun, RunStatus
from runyard.store import open_store
from runyard.store.base import Store
from runyard.store.dbexec import DbExecutor
from runyard.store.postgres import PostgresStore
from runyard.store.records import Outcome, RunFilter
from tests.conftest import BACKENDS, pg_database

QUEUED, SLEEPING, ENDED = 100_000, 10_000, 20_000
#: Rows a hot query may touch at that backlog (a batch of 16, a page of 51, index probes).
FEW = 300

# Runs and items as the store writes them: queued runs of two workflows, runs asleep (their
# item handed back until an hour from now), ended runs; created over the past hour.
SEED = {
    "postgres": [
        """INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             created_at, started_at, finished_at, schedule_id, task_id)
           SELECT CASE WHEN g <= %(q)s THEN 'q' WHEN g <= %(q)s + %(s)s THEN 's' ELSE 'e' END
                    || g,
                  CASE WHEN g %% 2 = 0 THEN 'wf' ELSE 'other' END, '1',
                  CASE WHEN g <= %(q)s THEN 'QUEUED' WHEN g <= %(q)s + %(s)s THEN 'RUNNING'
                       ELSE 'SUCCEEDED' END, 1, 1, runyard_now() - 3600 + g * 0.01,
                  CASE WHEN g > %(q)s THEN runyard_now() - 3600 + g * 0.01 END,
                  CASE WHEN g > %(q)s + %(s)s THEN runyard_now() - 3600 + g * 0.01 END,
                  CASE WHEN g %% 3 = 0 THEN 'sch_big' END,
                  CASE WHEN g %% 2000 = 9 THEN 'task_1' END
           FROM generate_series(1, %(q)s + %(s)s + %(e)s) AS g""",
        """INSERT INTO items (run_id, idx, kind, wref, state, due_at, parked, finished_at)
           SELECT r.id, 0, 'input', r.workflow || '@1',
                  CASE r.status WHEN 'QUEUED' THEN 'queued' WHEN 'RUNNING' THEN 'processing'
                       ELSE 'completed' END,
                  CASE WHEN r.status = 'RUNNING' THEN runyard_now() + 3600 ELSE r.created_at END,
                  CASE WHEN r.status = 'RUNNING' THEN 1 ELSE 0 END, r.finished_at
           FROM runs r""",
        "UPDATE run_transitions SET at = at - 3600",
    ],
    "sqlite": [
        """WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s
                                  WHERE g < :q + :s + :e)
           INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count,
             created_at, started_at, finished_at, schedule_id, task_id)
           SELECT CASE WHEN g <= :q THEN 'q' WHEN g <= :q + :s THEN 's' ELSE 'e' END || g,
                  CASE WHEN g % 2 = 0 THEN 'wf' ELSE 'other' END, '1',
                  CASE WHEN g <= :q THEN 'QUEUED' WHEN g <= :q + :s THEN 'RUNNING'
                       ELSE 'SUCCEEDED' END, 1, 1, ry_now() - 3600 + g * 0.01,
                  CASE WHEN g > :q THEN ry_now() - 3600 + g * 0.01 END,
                  CASE WHEN g > :q + :s THEN ry_now() - 3600 + g * 0.01 END,
                  CASE WHEN g % 3 = 0 THEN 'sch_big' END,
                  CASE WHEN g % 2000 = 9 THEN 'task_1' END
           FROM s""",
        """INSERT INTO items (run_id, idx, kind, wref, state, due_at, parked, finished_at)
           SELECT r.id, 0, 'input', r.workflow || '@1',
                  CASE r.status WHEN 'QUEUED' THEN 'queued' WHEN 'RUNNING' THEN 'processing'
                       ELSE 'completed' END,
                  CASE WHEN r.status = 'RUNNING' THEN ry_now() + 3600 ELSE r.created_at END,
                  CASE WHEN r.status = 'RUNNING' THEN 1 ELSE 0 END, r.finished_at
           FROM runs r""",
        "UPDATE run_transitions SET at = at - 3600",
    ],
}

PARAMS: dict[str, Any] = {
    "owner": "w1",
    "wrefs": ["wf@1", "other@1", "absent@1"],
    "lease_s": 30.0,
    "limit": 16,
    "flow_key": "k",
    "run_id": "q10",
    "cutoff": 0.0,
    "after_id": 0,
    "ids": None,
    "workflow": "wf",
    "prefix": None,
    "statuses": ["SUCCEEDED"],
    "task_id": None,
    "schedule_id": None,
    "mode": None,
    "created_after": None,
    "created_before": None,
    "after_at": None,
}

#: The plan a statement gets once prepared (psycopg prepares it at its fifth use, and
#: PostgreSQL may then plan it once for any parameters): the one to check.
GENERIC = "SET LOCAL plan_cache_mode = force_generic_plan"

#: The hot and user-facing queries, and the index each must walk (None: any index).
HOT = {
    "unpark_due": "items_parked",
    "next_due": "items_parked",
    "claim": "items_ready",
    "claim_keyed": "items_ready_keyed",
    "due_flow_keys": "items_ready_keyed",
    "has_due_work": "items_ready",
    "finalize_run": "items_open_inputs",
    "promote_scheduled": None,
    "expire_leases": "items_lease",
    "list_runs_desc": "runs_created",
    "list_runs_by_status_desc": "runs_status",
    "list_runs_by_workflow_desc": "runs_workflow",
    "list_runs_by_workflow_asc": "runs_workflow",
    "list_runs_by_schedule_desc": "runs_schedule",
    "list_runs_by_schedule_asc": "runs_schedule",
    "list_runs_by_task_desc": "runs_task",
    "list_runs_by_task_asc": "runs_task",
    "last_transition": None,
    "transitions_since": None,
    "purge_events": None,
}


def _seed(url: str) -> Store:
    store = open_store(url)
    conn = store.connect()
    try:
        # Statistics of the empty tables, as an analyze before a burst leaves them (and
        # autovacuum, off or not there yet, does not renew): the planner's worst case.
        conn.execute("ANALYZE")
        with store.transaction(conn, write=True, pipeline=False) as tx:
            for sql in SEED[store.backend]:
                tx.cursor.execute(sql, {"q": QUEUED, "s": SLEEPING, "e": ENDED})
    finally:
        store.close_connection(conn)
    return store


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest,
    pg_template: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Store]:
    """One seeded database per backend for the plan checks (which roll back what the
    statements they run change)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('seeded') / 'runyard.db'}"
        open_store(url).upgrade()
        store = _seed(url)
        yield store
        store.close()
        return
    assert pg_template is not None
    with pg_database(pg_template) as url:
        store = _seed(url)
        yield store
        store.close()


def _params(store: Store, conn: Any, name: str) -> dict[str, Any]:
    """What the store passes to ``name``: a list walks its own index (one by status is
    given no status), a count of transitions starts from the last ones."""
    params = dict(PARAMS)
    if name.startswith("list_runs_") and not name.startswith("list_runs_by"):
        params["statuses"] = None
    if name.startswith("list_runs_by_workflow"):  # a workflow alone: every status
        params["statuses"] = [s.value for s in RunStatus]
    if name.startswith(("list_runs_by_schedule", "list_runs_by_task")):
        # A schedule with a third of the history (its page must come in order from the
        # index, not from a sort of all its runs); a task with one run in 2,000 (its page
        # must not come from a walk of the whole history).
        params.update(workflow=None, statuses=None)
        if "schedule" in name:
            params["schedule_id"] = "sch_big"
        else:
            params["task_id"] = "task_1"
    if name == "transitions_since":
        row = conn.execute("SELECT max(id) - 100 AS id FROM run_transitions").fetchone()
        params["after_id"] = row["id"] if isinstance(row, dict) else row[0]
    if store.backend == "sqlite":
        params = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
    return params


def _pg_plan(store: Store, name: str) -> dict[str, Any]:
    """The executed plan of query ``name`` (its changes rolled back)."""
    conn = store.connect()
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(GENERIC)
            row = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + store.queries[name],
                _params(store, conn, name),
            ).fetchone()
    finally:
        conn.close()
    plan: dict[str, Any] = row["QUERY PLAN"][0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("name", sorted(HOT))
def test_hot_queries_walk_an_index_and_touch_a_batch_at_a_backlog(seeded: Store, name: str) -> None:
    store = seeded
    index = HOT[name]
    if store.backend == "postgres":
        nodes = list(_nodes(_pg_plan(store, name)))
        scans = [n for n in nodes if "Relation Name" in n]
        for n in scans:
            assert n["Node Type"] != "Seq Scan", (name, n["Relation Name"])
        # Rows read: those a scan returned and those its filters dropped.
        touched = sum(
            (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
            for n in scans
        )
        assert touched <= FEW, (name, touched)
        for n in nodes:  # nothing sorts more than a page
            if n["Node Type"] in ("Sort", "Incremental Sort"):
                assert n["Actual Rows"] <= FEW, (name, n)
        if index is not None:
            assert index in {n.get("Index Name") for n in nodes}, name
    else:
        conn = store.connect()
        try:
            params = _params(store, conn, name)
            plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + store.queries[name], params)]
        finally:
            conn.close()
        # SCAN is a walk of a whole table or index (a virtual table's is json_each).
        full = [line for line in plan if line.startswith("SCAN") and "VIRTUAL" not in line]
        assert not [line for line in full if "items" in line or "runs" in line], (name, plan)
        # A sort of what a walk found (merging walks: a batch each), never of a table.
        if any("FOR ORDER BY" in line for line in plan):
            assert name.startswith(("claim", "list_runs_by_status", "list_runs_by_workflow")), (
                name,
                plan,
            )
        if index is not None:
            assert any(index in line for line in plan), (name, plan)


def test_postgres_connections_never_compile_a_statement_with_jit(seeded: Store) -> None:
    """The store's connections run with jit off: a statement whose estimate crosses
    jit_above_cost (set to 0 here, so that every statement would) is not compiled. (The
    lease-expiry pass, estimated at 20,000 rows once a vacuum counted a 100,000-item
    table, was compiled at each run: 60-85 ms for a statement that reads 2 buffers.)"""
    store = seeded
    if store.backend != "postgres":
        pytest.skip("PostgreSQL's JIT")
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url) as plain:  # (pg_jit_available: and jit is on)
        available = plain.execute("SELECT pg_jit_available()").fetchone()
    if not (available and available[0]):
        pytest.skip("this server was built without JIT")
    conn = store.connect()
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL jit_above_cost = 0")
            row = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + store.queries["expire_leases"],
                _params(store, conn, "expire_leases"),
            ).fetchone()
    finally:
        conn.close()
    assert row is not None
    assert "JIT" not in row["QUERY PLAN"][0], row["QUERY PLAN"][0].get("JIT")


def _tuples_read(store: Store) -> dict[str, int]:
    """Index and table tuples read so far, by relation (PostgreSQL's statistics, once the
    backends that read them have ended: they report at exit)."""
    conn = store.connect()
    try:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT indexrelname AS name, idx_tup_read AS n FROM pg_stat_user_indexes "
            "UNION ALL SELECT relname, seq_tup_read FROM pg_stat_user_tables"
        ).fetchall()
    finally:
        conn.close()
    return {r["name"]: int(r["n"]) for r in rows}


def test_claims_and_outcomes_read_a_handful_of_rows_at_a_backlog(pg_db_url: str) -> None:
    """Claims and groups of outcomes through the store's own path (statements prepared
    after their fifth use, as a worker's are), at a backlog and without statistics: the
    rows they read grow with what they claim and finish, not with the backlog. (The
    outcome statement once read every open input of every run per outcome: 20,000 rows
    each at a 20,000-run backlog.) PostgreSQL only: SQLite keeps no such counts; its
    statements' plans are checked above."""
    store = _seed(pg_db_url)
    assert isinstance(store, PostgresStore)
    conn = store.connect()
    try:  # (what a prepared statement may get: one plan for any parameters)
        row = conn.execute("SELECT current_database() AS name").fetchone()
        assert row is not None
        conn.execute(f'ALTER DATABASE "{row["name"]}" SET plan_cache_mode = force_generic_plan')
    finally:
        conn.close()
    before = _tuples_read(store)
    db = DbExecutor(store)
    finished = 0
    try:
        for _ in range(10):
            claimed = db.write_sync(store.claim_txn, "w1", ["wf@1", "other@1"], 16, 30.0)
            calls = [Outcome(c.fence, 1, [], ItemState.COMPLETED, "1", None) for c in claimed]
            assert db.write_sync(store.complete_items_txn, calls) == ["SUCCEEDED"] * 16
            finished += len(claimed)
    finally:
        db.close()
    after = _tuples_read(store)
    store.close()
    read = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
    assert finished == 160
    assert sum(read.values()) <= 30 * finished, read


def test_counting_and_listing_at_a_backlog_read_pages(seeded: Store) -> None:
    """Through the store's own methods: a page of each list, and the open-run counts."""
    store = seeded
    db = DbExecutor(store)
    try:
        for filt in (
            RunFilter(statuses=[RunStatus.SUCCEEDED]),
            RunFilter(workflow="wf"),
            RunFilter(workflow="other", statuses=[RunStatus.QUEUED, RunStatus.SUCCEEDED]),
            RunFilter(),
        ):
            page = db.read_sync(store.list_runs, filt, None, 50)
            assert len(page.items) == 50 and page.next_cursor
            times = [r.created_at for r in page.items]
            assert times == sorted(times, reverse=True)
            for r in page.items:
                assert filt.workflow in (None, r.workflow)
                assert not filt.statuses or r.status in filt.statuses
        counts = db.read_sync(store.run_counts, None)
        assert counts.open == {"QUEUED": QUEUED, "RUNNING": SLEEPING}
    finally:
        db.close()


def _seeded_ids(store: Store, where: str) -> list[str]:
    """The seeded runs matching ``where``, newest first (as the lists order them)."""
    conn = store.connect()
    try:
        rows = conn.execute(
            f"SELECT id FROM runs WHERE {where} ORDER BY created_at DESC, id DESC"
        ).fetchall()
    finally:
        store.close_connection(conn)
    return [r["id"] if isinstance(r, dict) else r[0] for r in rows]


def test_lists_by_schedule_and_by_task_page_through_exactly_their_runs(seeded: Store) -> None:
    """A schedule's and a task's runs, alone or with a workflow and a status, in both
    orders: every page in list order, the cursor going on where the page stopped, and
    exactly the runs that match (their own walks, migration 0018)."""
    store = seeded
    db = DbExecutor(store)
    try:
        cases = [
            (RunFilter(task_id="task_1"), "task_id = 'task_1'"),
            (
                RunFilter(task_id="task_1", workflow="other", statuses=[RunStatus.QUEUED]),
                "task_id = 'task_1' AND workflow = 'other' AND status = 'QUEUED'",
            ),
            (
                RunFilter(schedule_id="sch_big", statuses=[RunStatus.SUCCEEDED]),
                "schedule_id = 'sch_big' AND status = 'SUCCEEDED'",
            ),
        ]
        for filt, where in cases:
            expected = _seeded_ids(store, where)
            assert expected, where
            for order in ("desc", "asc"):
                got: list[str] = []
                cursor: str | None = None
                while True:
                    page = db.read_sync(store.list_runs, filt, cursor, 40, order)
                    got += [r.id for r in page.items]
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
                want = expected if order == "desc" else expected[::-1]
                assert got == want, (where, order)
        # The first page of a schedule with a third of the history, newest first.
        page = db.read_sync(store.list_runs, RunFilter(schedule_id="sch_big"), None, 50)
        assert [r.id for r in page.items] == _seeded_ids(store, "schedule_id = 'sch_big'")[:50]
    finally:
        db.close()


def _claim_all(store: Store, owner: str, batches: list[list[str]]) -> None:
    """Claim 16 at a time until nothing is left; each batch's run ids."""
    db = DbExecutor(store)
    try:
        while claimed := db.write_sync(store.claim_txn, owner, ["wf@1", "other@1"], 16, 30.0):
            batches.append([c.fence.run_id for c in claimed])
    finally:
        db.close()


def _create_runs(store: Store, n: int) -> dict[str, int]:
    """``n`` runs of two workflows and three priorities (in creation order); their
    priorities by id. One is paused and one asleep for an hour (as a worker leaves it)."""
    priority = {f"r{i:03}": (i % 3) * 5 for i in range(n)}
    db = DbExecutor(store)
    try:

        async def create() -> None:
            for run_id, p in priority.items():
                wf = "wf" if int(run_id[1:]) % 2 else "other"
                await db.write(
                    store.create_run_txn,
                    NewRun(
                        id=run_id,
                        workflow=wf,
                        workflow_version="1",
                        inputs=[NewInput(input=run_id)],
                        priority=p,
                    ),
                )

        asyncio.run(create())
        db.write_sync(store.pause_txn, RunFilter(ids=["r000"], single=True))
        (c,) = db.write_sync(store.claim_txn, "w0", ["other@1"], 1, 30.0)
        assert c.fence.run_id == "r002"  # the best (priority 10), the oldest of those
        assert db.write_sync(store.suspend_txn, c.fence, 1, 4102444800.0, "sleep:nap", [])
    finally:
        db.close()
    return priority


def test_one_claimer_takes_the_best_first_across_workflows_and_leaves_held_runs(
    db_url: str,
) -> None:
    store = open_store(db_url)
    try:
        priority = _create_runs(store, 300)
        batches: list[list[str]] = []
        _claim_all(store, "w1", batches)
    finally:
        store.close()
    taken = [r for b in batches for r in b]
    assert len(taken) == len(set(taken)) == 298
    assert "r000" not in taken and "r002" not in taken  # paused; asleep
    for before, after in itertools.pairwise(batches):
        assert min(priority[r] for r in before) >= max(priority[r] for r in after)
    # Among equals, the oldest first (batches of one priority hold consecutive ids).
    firsts = [min(b) for b in batches if len({priority[r] for r in b}) == 1]
    assert firsts == sorted(firsts, key=lambda r: (-priority[r], r))


def test_two_claimers_at_once_take_each_item_exactly_once(db_url: str) -> None:
    store = open_store(db_url)
    try:
        _create_runs(store, 600)
        batches: dict[str, list[list[str]]] = {"w1": [], "w2": []}
        threads = [
            threading.Thread(target=_claim_all, args=(store, owner, got))
            for owner, got in batches.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        store.close()
    taken = [r for got in batches.values() for b in got for r in b]
    assert len(taken) == len(set(taken)) == 598
    assert "r000" not in taken and "r002" not in taken


def test_flow_control_caps_hold_at_a_backlog(db_url: str) -> None:
    """400 runs under a key of parallelism 3 behind 400 free ones: claims take every free
    item but never more than 3 keyed ones at once, however many are due; each outcome
    frees one slot; two keys stay apart."""
    store = open_store(db_url)
    db = DbExecutor(store)
    limits = {"parallelism": 3, "rate": None, "period_s": 1.0}
    try:

        async def create() -> None:
            for i in range(1200):
                key = (None, "k1", "k2")[i % 3]
                await db.write(
                    store.create_run_txn,
                    NewRun(
                        id=f"r{i:04}",
                        workflow="wf",
                        workflow_version="1",
                        inputs=[NewInput(input=i)],
                        flow_key=key,
                        flow_limits={"key": key, **limits} if key else None,
                    ),
                )

        asyncio.run(create())
        owned: dict[str | None, list[Any]] = {None: [], "k1": [], "k2": []}
        keys: list[str] = []
        for _ in range(40):  # as a worker does: scans say which keys have due items
            claimed = db.write_sync(store.claim_txn, "w1", ["wf@1"], 16, 30.0, True, keys)
            keys = claimed.flow_keys
            for c in claimed:
                owned[c.flow_key].append(c.fence)
        assert len(owned[None]) == 400
        assert len(owned["k1"]) == 3 and len(owned["k2"]) == 3
        assert sorted(keys) == ["k1", "k2"]
        # One outcome of k1 frees one of its slots, and only that one.
        db.write_sync(
            store.complete_item_txn, owned["k1"][0], 1, [], ItemState.COMPLETED, "1", None
        )
        more = db.write_sync(store.claim_txn, "w1", ["wf@1"], 16, 30.0, True, keys)
        assert [c.flow_key for c in more] == ["k1"]
    finally:
        db.close()
        store.close()


def test_a_list_by_workflow_walks_its_index_when_statistics_say_every_run_is_alike(
    pg_db_url: str,
) -> None:
    """50,000 runs, all SUCCEEDED runs of one workflow, analyzed: a planner that takes
    each status asked for as matching every run once walked all of runs_created for each
    status no run had (2 s a page at 1,000,000 runs). PostgreSQL only: the trap is its
    planner's (SQLite's lists are checked above)."""
    store = open_store(pg_db_url)
    conn = store.connect()
    try:
        conn.execute(
            """INSERT INTO runs (id, workflow, workflow_version, status, input_count,
                 item_count, created_at, finished_at)
               SELECT 'e' || g, 'wf', '1', 'SUCCEEDED', 1, 1, g, g
               FROM generate_series(1, 50000) AS g"""
        )
        conn.execute("ANALYZE runs")
        with conn.transaction():
            conn.execute(GENERIC)
            params = {**PARAMS, "statuses": [s.value for s in RunStatus]}
            row = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + store.queries["list_runs_by_workflow_desc"],
                params,
            ).fetchone()
    finally:
        conn.close()
        store.close()
    scans = [n for n in _nodes(row["QUERY PLAN"][0]["Plan"]) if n.get("Relation Name") == "runs"]
    touched = sum(
        (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"] for n in scans
    )
    assert touched <= FEW, touched


def _vacuums_of_items(conn: Any) -> tuple[int, bool]:
    """(manual vacuums of ``items`` so far, whether the server's autovacuum is on)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT vacuum_count AS n, current_setting('autovacuum') = 'on' AS auto "
        "FROM pg_stat_user_tables WHERE relname = 'items'"
    ).fetchone()
    return int(row["n"]), bool(row["auto"])


def test_workers_keep_the_claim_index_clean_where_autovacuum_is_off(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every so many claims a worker runs the store's claim upkeep: on PostgreSQL without
    autovacuum a vacuum of items (the entries of claimed items otherwise pile up at the
    front of the claim index, walked by every claim); nothing where the server cleans up
    (autovacuum on) or nothing piles up (SQLite)."""
    from runyard.worker import worker as worker_module
    from tests.conftest import make_yard, running_worker
    from tests.waiting import wait_until_async

    monkeypatch.setattr(worker_module, "UPKEEP_EVERY_CLAIMS", 10)
    monkeypatch.setattr(worker_module, "UPKEEP_CHECK_S", 0.05)
    yard = make_yard(db_url)

    @yard.workflow
    async def nothing(ctx: Any, i: int) -> int:
        return i

    conn = yard.store.connect() if backend == "postgres" else None
    try:

        async def main() -> None:
            before, auto = _vacuums_of_items(conn) if conn else (0, False)
            async with running_worker(yard):
                handles = [await yard.start("nothing", i) for i in range(30)]
                for h in handles:
                    await h.result(timeout=30)
                if conn is not None and not auto:
                    await wait_until_async(
                        lambda: _vacuums_of_items(conn)[0] > before,
                        timeout=10,
                        what="a vacuum of items",
                    )
            upkept = await yard.db.read(yard.store.claim_upkeep)
            assert upkept is (conn is not None and not auto)

        asyncio.run(main())
    finally:
        if conn is not None:
            conn.close()
        yard.close()
