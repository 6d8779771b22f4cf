"""The database executor: commits that need not wait for the disk, and jobs run in the
event loop itself while the writing thread is idle."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import sqlite3
import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest

from runyard import Context
from runyard.errors import RunNotFound, StoreUnavailable
from runyard.models import ItemState, NewInput, NewRun
from runyard.store import Checkpoint, Tx, open_store
from runyard.store.dbexec import DbExecutor, LockBusy, retry_window
from runyard.store.postgres import PostgresStore
from runyard.store.sqlite import SQLiteStore
from runyard.store.tx import WAKE, Later, Sent
from tests.conftest import make_yard
from tests.waiting import wait_until_async


def _new_run(run_id: str) -> NewRun:
    return NewRun(id=run_id, workflow="wf", workflow_version="1", inputs=[NewInput(input=None)])


def _commit_mode(store: Any, tx: Tx) -> str:
    if isinstance(store, SQLiteStore):
        return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
            tx.cursor.execute("PRAGMA synchronous").fetchone()[0]
        ]
    return str(tx.cursor.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"])


async def _thread_idle(db: DbExecutor) -> None:
    """Wait until the database thread is idle with its connection open: a job submitted
    from the loop then runs in the loop."""
    await wait_until_async(
        lambda: db._idle() and db._writer.conn is not None,
        timeout=5,
        interval=0.001,
        what="the database thread idle, its connection open",
    )


def test_a_lax_write_commits_without_waiting_for_the_disk_and_only_that_one(db_url: str) -> None:
    store = open_store(db_url)
    conn = store.connect()
    durable_mode = "FULL" if isinstance(store, SQLiteStore) else "on"
    lax_mode = "NORMAL" if isinstance(store, SQLiteStore) else "off"
    try:
        with store.transaction(conn, write=True, durable=False) as tx:
            assert _commit_mode(store, tx) == lax_mode
            store.create_run_txn(tx, _new_run("lax"))
        with store.transaction(conn, write=True) as tx:
            assert _commit_mode(store, tx) == durable_mode
        # Committed and visible like any other write.
        with store.transaction(conn, write=False) as tx:
            assert store.get_run(tx, "lax") is not None
        # A failed lax write leaves the connection as it found it (SQLite), or closed
        # (PostgreSQL: a failed pipeline's connection is replaced); nothing of it stays.
        with pytest.raises(ZeroDivisionError), store.transaction(conn, write=True, durable=False):
            1 / 0  # noqa: B018
        assert getattr(conn, "closed", False) == (store.backend == "postgres")
        if store.backend == "postgres":
            conn = store.connect()
        with store.transaction(conn, write=True) as tx:
            assert _commit_mode(store, tx) == durable_mode
    finally:
        store.close_connection(conn)


def test_a_group_waits_for_the_disk_when_any_of_its_jobs_must(db_url: str) -> None:
    db = DbExecutor(open_store(db_url))
    modes: list[str] = []

    def record(tx: Tx) -> None:
        modes.append(_commit_mode(db.store, tx))

    async def main() -> None:
        # Submitted in one pass of the loop: one group, one transaction.
        await asyncio.gather(db.write(record, durable=False), db.write(record))
        await db.write(record, durable=False)

    try:
        asyncio.run(main())
    finally:
        db.close()
    durable_mode, lax_mode = ("FULL", "NORMAL") if db.store.backend == "sqlite" else ("on", "off")
    assert modes == [durable_mode, durable_mode, lax_mode]


def test_an_idle_executor_runs_jobs_of_one_loop_pass_in_the_loop_as_one_group(
    db_url: str,
) -> None:
    db = DbExecutor(open_store(db_url))
    seen: list[tuple[str, int]] = []

    def write(tx: Tx, run_id: str) -> str:
        seen.append((threading.current_thread().name, id(tx)))
        db.store.create_run_txn(tx, _new_run(run_id))
        return run_id

    def read(tx: Tx, run_id: str) -> str | None:
        seen.append((threading.current_thread().name, id(tx)))
        row = db.store.get_run(tx, run_id)
        return None if row is None else str(row.status)

    async def main() -> tuple[list[str], str | None]:
        # The loop never opens the connection: the first write goes to the thread.
        await db.write(write, "first")
        await _thread_idle(db)
        ids = await asyncio.gather(*(db.write(write, f"r{i}") for i in range(5)))
        await db.read(read, "r2")  # a read not marked small: always a thread
        await _thread_idle(db)
        return list(ids), await db.read(read, "r3", inline=True)

    try:
        ids, status = asyncio.run(main())
    finally:
        db.close()
    assert ids == [f"r{i}" for i in range(5)]
    assert status == "QUEUED"
    threads = [name for name, _ in seen]
    assert threads[0] == "runyard-db-0"  # the writing thread
    assert threads[1:6] == ["MainThread"] * 5 and threads[7] == "MainThread"
    # (PostgreSQL reads not marked small have a thread and a connection of their own.)
    assert threads[6] == ("runyard-db-0" if db.store.backend == "sqlite" else "runyard-db-1")
    assert len({tx for _, tx in seen[1:6]}) == 1  # the five writes shared a transaction


def test_a_run_of_many_inputs_is_written_by_the_thread_not_in_the_loop(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle executor writes a run of one input in the event loop; a run of many inputs
    (a write of unbounded size) always goes to the database thread."""
    yard = make_yard(db_url)

    @yard.workflow
    async def inputs_probe(ctx: Context, x: int) -> int:
        return x

    threads: list[tuple[int, str]] = []
    real = yard.store.create_run_txn

    def spy(tx: Tx, run: NewRun) -> Any:
        threads.append((len(run.inputs), threading.current_thread().name))
        return real(tx, run)

    monkeypatch.setattr(yard.store, "create_run_txn", spy)

    async def main() -> None:
        await yard.start("inputs_probe", 0)  # (opens the thread's connection)
        await _thread_idle(yard.db)
        await yard.start("inputs_probe", 1)
        await _thread_idle(yard.db)
        await yard.start("inputs_probe", inputs=list(range(17)))

    try:
        asyncio.run(main())
    finally:
        yard.close()
    assert threads[1:] == [(1, "MainThread"), (17, "runyard-db-0")]


class RoundTrips:
    """Counts the waits for PostgreSQL's answers (pipeline syncs and exits, statements
    outside a pipeline) on the real psycopg classes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import psycopg

        self.count = 0

        def counted(real: Any) -> Any:
            def wrapper(obj: Any, *args: Any, **kwargs: Any) -> Any:
                if not isinstance(obj, psycopg.Cursor) or obj.connection._pipeline is None:
                    self.count += 1
                return real(obj, *args, **kwargs)

            return wrapper

        monkeypatch.setattr(psycopg.Pipeline, "sync", counted(psycopg.Pipeline.sync))
        monkeypatch.setattr(psycopg.Pipeline, "__exit__", counted(psycopg.Pipeline.__exit__))
        monkeypatch.setattr(psycopg.Cursor, "execute", counted(psycopg.Cursor.execute))


async def _as_one_group(
    db: DbExecutor, writes: Any, *, return_exceptions: bool = False
) -> list[Any]:
    """Run the ``writes`` (a function giving awaitables) queued while the writing
    thread is busy, so that it takes them as one group, in one transaction; their
    answers (and exceptions, if ``return_exceptions``)."""
    held, release = threading.Event(), threading.Event()

    def hold(tx: Tx) -> None:
        held.set()
        release.wait(10)

    blocker = asyncio.wrap_future(db.submit(True, hold))
    assert await asyncio.to_thread(held.wait, 10)
    jobs = list(writes())
    pending = asyncio.gather(*jobs, return_exceptions=return_exceptions)
    await wait_until_async(
        lambda: db._queue.qsize() >= len(jobs),
        timeout=5,
        interval=0.001,
        what=f"{len(jobs)} writes queued",
    )
    release.set()
    await blocker
    return list(await pending)


def test_runs_created_together_wait_for_one_answer(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(db_url)
    db = DbExecutor(store)
    trips = RoundTrips(monkeypatch) if store.backend == "postgres" else None

    async def main() -> list[tuple[Any, bool]]:
        await db.write(store.create_run_txn, _new_run("existing"))
        if trips:
            trips.count = 0
        return await _as_one_group(
            db,
            lambda: [
                *(db.write(store.create_run_txn, _new_run(f"new{i}")) for i in range(6)),
                db.write(store.create_run_txn, _new_run("existing")),
            ],
        )

    try:
        answers = asyncio.run(main())
    finally:
        db.close()
    assert [(row["id"], created) for row, created in answers] == [
        *((f"new{i}", True) for i in range(6)),
        ("existing", False),
    ]
    assert all(row["status"] == "QUEUED" for row, _ in answers)
    if trips:
        # One round trip for all seven answers and the commit (not one each and one
        # more), one more to read the run that existed; and the blocking job's own.
        assert trips.count == 3


def _variety(prefix: str) -> list[NewRun]:
    """Runs of every shape a trigger makes."""
    bad = {"code": "invalid_input", "message": "no"}

    def run(**fields: Any) -> NewRun:
        return NewRun(workflow="wf", workflow_version="1", **fields)

    return [
        run(id=f"{prefix}plain", inputs=[NewInput(input={"a": [1, "x\\u0000"]})]),
        run(
            id=f"{prefix}many",
            inputs=[
                NewInput(input=1, custom_data={"ref": "é"}),
                NewInput(input=2, error=bad),
                NewInput(input=None),
            ],
            priority=7,
            timeout_s=12.5,
            max_recovery_attempts=2,
            has_on_failure=True,
            sync_mode="incremental",
            max_results=3,
            options={"retries": 4},
            task_id="t1",
        ),
        run(id=f"{prefix}invalid", inputs=[NewInput(input=1, error=bad)]),
        run(id=f"{prefix}later", inputs=[NewInput(input=0)], not_before=4e9),
        run(id=f"{prefix}delayed", inputs=[NewInput(input=0)], delay_s=3600.25),
        run(
            id=f"{prefix}flow",
            inputs=[NewInput(input=0)],
            flow_key=f"{prefix}key",
            flow_limits={"key": f"{prefix}key", "parallelism": 2, "rate": None, "period_s": 1.0},
        ),
    ]


def _stored(db: DbExecutor, run_id: str, prefix: str) -> Any:
    """The run and its items as stored, without what differs between two creations."""
    run = dataclasses.asdict(db.read_sync(db.store.get_run, run_id))
    items = [dataclasses.asdict(i) for i in db.read_sync(db.store.get_items, run_id)]
    for row in (run, *items):
        for key in ("id", "run_id", "created_at", "updated_at", "finished_at", "not_before"):
            row.pop(key, None)
    return {
        "run": run,
        "items": items,
        "flow_key": (run.pop("flow_key", None) or "")[len(prefix) :],
    }


def test_runs_created_together_are_stored_as_each_alone(db_url: str) -> None:
    """A group of creations, one run id twice among them, goes to the store in one call
    (one statement on PostgreSQL): every run and item is stored as when created alone,
    and only the first trigger of the doubled id creates it."""
    store = open_store(db_url)
    db = DbExecutor(store)

    async def main() -> list[Any]:
        for run in _variety("a-"):
            await db.write(store.create_run_txn, run)
        twice = NewRun(id="g-plain", workflow="wf", workflow_version="1", inputs=[NewInput(9)])
        return await _as_one_group(
            db,
            lambda: [db.write(store.create_run_txn, r) for r in [*_variety("g-"), twice]],
        )

    try:
        answers = asyncio.run(main())
        assert [(row["id"], created) for row, created in answers] == [
            *((r.id, True) for r in _variety("g-")),
            ("g-plain", False),
        ]
        assert answers[-1][0]["id"] == answers[0][0]["id"]
        for alone, together in zip(_variety("a-"), _variety("g-"), strict=True):
            assert _stored(db, together.id, "g-") == _stored(db, alone.id, "a-"), together.id
        assert db.read_sync(store.get_items, "g-plain")[0].input == {"a": [1, "x\\u0000"]}
        assert db.read_sync(store.get_run, "g-later").not_before == 4e9
        delayed, _ = (db.read_sync(store.get_run, f"{p}delayed") for p in ("g-", "a-"))
        assert delayed.not_before is not None and delayed.not_before - delayed.created_at == (
            pytest.approx(3600.25, abs=0.01)
        )
    finally:
        db.close()


def test_a_scan_finds_flow_keys_for_the_next_claim_in_the_same_round_trip(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that scans answers, with its claims, which flow-control keys have due
    items (on PostgreSQL still in one round trip); the next claim, given them, takes
    their items as far as the key's limits allow."""
    store = open_store(db_url)
    db = DbExecutor(store)
    trips = RoundTrips(monkeypatch) if store.backend == "postgres" else None
    limits = {"key": "k", "parallelism": 2, "rate": None, "period_s": 1.0}

    def keyed(run_id: str) -> NewRun:
        return dataclasses.replace(_new_run(run_id), flow_key="k", flow_limits=limits)

    async def main() -> list[tuple[list[str], list[str]]]:
        await db.write(store.create_run_txn, _new_run("free"))
        for i in range(3):
            await db.write(store.create_run_txn, keyed(f"keyed{i}"))
        seen = []
        for scan, keys in [(False, []), (True, []), (True, ["k"]), (True, ["k"])]:
            if trips:
                trips.count = 0
            got = await db.write(store.claim_txn, "w1", ["wf@1"], 10, 30.0, scan, keys)
            if trips and not keys:
                assert trips.count == 1
            seen.append((sorted(c.fence.run_id for c in got), got.flow_keys))
        return seen

    try:
        seen = asyncio.run(main())
    finally:
        db.close()
    assert seen == [
        (["free"], []),  # no scan: no keyed item, no key
        ([], ["k"]),  # a scan finds the key
        (["keyed0", "keyed1"], ["k"]),  # its parallelism: 2; one more is due
        ([], ["k"]),  # held back by its limit
    ]


def test_outcomes_written_together_wait_for_one_answer(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three runs' outcomes and a fenced-out one (a stale epoch) in one group: each gets
    its own answer, and on PostgreSQL the group and its commit take one round trip."""
    store = open_store(db_url)
    db = DbExecutor(store)
    trips = RoundTrips(monkeypatch) if store.backend == "postgres" else None

    async def main() -> list[Any]:
        for i in range(3):
            await db.write(store.create_run_txn, _new_run(f"done{i}"))
        claimed = await db.write(store.claim_txn, "w1", ["wf@1"], 10, 30.0)
        fences = sorted((c.fence for c in claimed), key=lambda f: f.run_id)
        stale = dataclasses.replace(fences[0], epoch=fences[0].epoch - 1)
        if trips:
            trips.count = 0
        return await _as_one_group(
            db,
            lambda: [
                db.write(store.complete_item_txn, f, 1, [], ItemState.COMPLETED, '"ok"', None)
                for f in [*fences, stale]
            ],
        )

    try:
        answers = asyncio.run(main())
        waits = trips.count if trips else 0
        runs = [db.read_sync(store.get_run, f"done{i}") for i in range(3)]
    finally:
        db.close()
    assert answers == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", None]
    assert [(r.status.value, r.result) for r in runs] == [("SUCCEEDED", "ok")] * 3
    if trips:
        assert waits == 2  # the group's, and the blocking job's own


def test_outcomes_of_one_group_finish_items_and_runs_as_one_at_a_time_would(
    db_url: str,
) -> None:
    """One group: the three inputs of a run (one failing) with their last checkpoints,
    an outcome whose checkpoint emits an output (the general path), and a lone run's
    failure: items, steps, outputs and run outcomes as written one at a time."""
    store = open_store(db_url)
    db = DbExecutor(store)
    three = NewRun(
        id="o-three",
        workflow="wf",
        workflow_version="1",
        inputs=[NewInput(input=i) for i in range(3)],
    )

    def step(position: int, **extra: Any) -> Checkpoint:
        return Checkpoint(position=position, name=f"s{position}", kind="step", result="1", **extra)

    async def main() -> list[Any]:
        for run in (three, _new_run("o-emit"), _new_run("o-fail")):
            await db.write(store.create_run_txn, run)
        claimed = await db.write(store.claim_txn, "w1", ["wf@1"], 10, 30.0)
        f = {(c.fence.run_id, c.fence.idx): c.fence for c in claimed}
        done, failed = ItemState.COMPLETED, ItemState.FAILED
        calls = [
            (f["o-three", 0], 1, [step(1), step(2)], done, '"a"', None),
            (f["o-three", 1], 1, [step(1)], failed, None, '{"message": "no"}'),
            (f["o-three", 2], 1, [], done, '"c"', None),
            (f["o-emit", 0], 1, [step(1, output=(None, '{"x": 1}'))], done, "7", None),
            (f["o-fail", 0], 1, [], failed, None, '{"message": "alone"}'),
        ]
        return await _as_one_group(
            db, lambda: [db.write(store.complete_item_txn, *call) for call in calls]
        )

    try:
        answers = asyncio.run(main())
        runs = {r: db.read_sync(store.get_run, r) for r in ("o-three", "o-emit", "o-fail")}
        items = [(i.state.value, i.result) for i in db.read_sync(store.get_items, "o-three")]
        steps = [(s.item_idx, s.position) for s in db.read_sync(store.get_steps, "o-three")]
        outputs = db.read_sync(store.get_outputs, "o-emit")
    finally:
        db.close()
    assert answers[2:] == ["PARTIAL_SUCCEEDED", "SUCCEEDED", "FAILED"]
    assert answers[:2] == ["PARTIAL_SUCCEEDED"] * 2 or answers[:2] == ["RUNNING"] * 2
    three_run = runs["o-three"]
    assert three_run.status.value == "PARTIAL_SUCCEEDED"
    assert three_run.result == ["a", None, "c"]
    assert three_run.error["failed"] == 1
    assert items == [("completed", "a"), ("failed", None), ("completed", "c")]
    assert sorted(steps) == [(0, 1), (0, 2), (1, 1)]
    assert (runs["o-emit"].status.value, runs["o-emit"].result) == ("SUCCEEDED", 7)
    assert [o.data for o in outputs] == [{"x": 1}]
    assert runs["o-fail"].status.value == "FAILED"
    assert runs["o-fail"].error == {"message": "alone"}


def test_a_later_is_read_after_the_commit_was_sent_and_a_failure_still_undoes_all(
    db_url: str,
) -> None:
    store = open_store(db_url)
    db = DbExecutor(store)

    def create_then_read(tx: Tx, run_id: str) -> Later[tuple[bool, bool]]:
        store.create_run_txn(tx, _new_run(run_id))
        return Later(lambda: (tx.finished, store.get_run(tx, run_id) is not None))

    def create_then_fail(tx: Tx, run_id: str) -> Later[None]:
        store.create_run_txn(tx, _new_run(run_id))
        # On PostgreSQL queued with the COMMIT and failing only when the answers are
        # read (SQLite fails here at once): the COMMIT must not count.
        tx.cursor.execute("SELECT * FROM no_such_table")
        return Later(lambda: tx.cursor.fetchone() and None)

    def announce_late(tx: Tx) -> Later[None]:
        return Later(tx.announce_wake)

    async def main() -> None:
        finished, visible = await db.write(create_then_read, "kept")
        assert finished and visible  # read after the commit, which it sees
        with pytest.raises(Exception, match=r"no_such_table|no such table"):
            await db.write(create_then_fail, "undone")
        with pytest.raises(RuntimeError, match="never be sent"):
            await db.write(announce_late)
        assert (await db.read(store.get_run, "kept")).id == "kept"
        with pytest.raises(RunNotFound):
            await db.read(store.get_run, "undone")

    try:
        asyncio.run(main())
    finally:
        db.close()


class Blocker:
    """Another connection holding what a write in these tests needs: SQLite's write lock;
    on PostgreSQL the row of run ``held`` (created here), which the tests' writes lock."""

    def __init__(self, db_url: str) -> None:
        self.store = open_store(db_url)
        self.store.upgrade()
        self.sqlite = isinstance(self.store, SQLiteStore)
        if self.sqlite:
            path = db_url.removeprefix("sqlite:///")
            self.conn: Any = sqlite3.connect(path, isolation_level=None)
        else:
            self.conn = self.store.connect()
            with self.store.transaction(self.conn, write=True) as tx:
                self.store.create_run_txn(tx, _new_run("held"))

    def hold(self) -> None:
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT id FROM runs WHERE id = 'held' FOR UPDATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        if self.sqlite:
            self.conn.close()
        else:
            self.store.close_connection(self.conn)

    def write(self, tx: Tx, run_id: str) -> None:
        """A write that needs what is held: a new run (and, on PostgreSQL, run ``held``)."""
        if not self.sqlite:
            tx.q1("lock_runs", {"run_ids": ["held"]})
        self.store.create_run_txn(tx, _new_run(run_id))


def test_inline_jobs_never_wait_for_a_lock_and_a_failing_job_fails_alone(db_url: str) -> None:
    blocker = Blocker(db_url)
    db = DbExecutor(open_store(db_url))
    ran_in: list[str] = []

    def write(tx: Tx, run_id: str) -> str:
        ran_in.append(threading.current_thread().name)
        blocker.write(tx, run_id)
        return run_id

    def bad(tx: Tx) -> None:
        raise ValueError("this job is wrong")

    async def main() -> tuple[list[float], list[Any]]:
        await db.write(write, "opens")  # (the loop never opens the connection)
        await _thread_idle(db)
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        blocker.hold()  # another connection holds the lock for 0.3 s
        asyncio.get_running_loop().call_later(0.3, blocker.release)
        results = await asyncio.gather(db.write(write, "a"), db.write(bad), return_exceptions=True)
        t.cancel()
        return ticks, list(results)

    try:
        ticks, results = asyncio.run(main())
    finally:
        db.close()
        blocker.close()
    assert results[0] == "a"
    assert isinstance(results[1], ValueError) and "this job is wrong" in str(results[1])
    # The loop kept turning while the lock was held: no gap near the 0.3 s wait.
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.15
    # Tried in the loop first (SQLite finds its lock taken before the job runs), then
    # handed to the thread, which waited.
    assert ("MainThread" in ran_in) == (db.store.backend == "postgres")
    assert ran_in[-1].startswith("runyard-db")
    # One writer connection per process: the loop borrows the thread's.
    conns: list[tuple[str, int]] = []

    def where(tx: Tx) -> None:
        conns.append((threading.current_thread().name, id(tx.cursor.connection)))

    db2 = DbExecutor(open_store(db_url))
    try:
        db2.write_sync(where)  # from a thread that is not a loop: the database thread
        asyncio.run(db2.write(where))  # from a loop, the thread idle: in the loop
    finally:
        db2.close()
    assert [name for name, _ in conns] == ["runyard-db-0", "MainThread"]
    assert conns[0][1] == conns[1][1]
    check = open_store(db_url)
    conn = check.connect()
    try:
        with check.transaction(conn, write=False) as tx:
            assert check.get_run(tx, "a") is not None
    finally:
        check.close_connection(conn)


def test_a_write_that_must_not_queue_for_the_lock_fails_at_once(db_url: str) -> None:
    """``busy_fails`` turns "another connection holds the lock" (SQLite's write lock, a
    PostgreSQL row lock) into LockBusy at once (a worker's claim then looks again without
    the lock); a write of the same loop pass without it still waits for the lock and
    commits."""
    blocker = Blocker(db_url)
    db = DbExecutor(open_store(db_url))
    ran: list[str] = []

    def write(tx: Tx, run_id: str) -> str:
        ran.append(run_id)
        blocker.write(tx, run_id)
        return run_id

    async def main() -> tuple[Any, Any, float]:
        await db.write(write, "opens")  # (the loop never opens the connection)
        await _thread_idle(db)
        blocker.hold()
        asyncio.get_running_loop().call_later(0.3, blocker.release)
        started = time.monotonic()
        quick = asyncio.ensure_future(db.write(write, "quick", busy_fails=True))
        patient = asyncio.ensure_future(db.write(write, "patient"))
        first = await asyncio.gather(quick, return_exceptions=True)
        failed_after = time.monotonic() - started
        return first[0], await patient, failed_after

    try:
        quick, patient, failed_after = asyncio.run(main())
    finally:
        db.close()
        blocker.close()
    assert isinstance(quick, LockBusy)
    assert failed_after < 0.2  # did not wait for the 0.3 s lock
    assert patient == "patient"
    # (PostgreSQL: tried in the loop, where it found the row locked.)
    assert ran[1:] == (["patient"] if db.store.backend == "sqlite" else ["quick", "patient"])


def test_one_writer_and_on_postgres_a_reader_of_its_own(db_url: str) -> None:
    """PostgreSQL: a read answers while the writer is busy, and a write commits while a
    read is slow (their own threads and connections), but a write waits for the writer.
    SQLite: one connection, so the read waits its turn too."""
    store = open_store(db_url)
    db = DbExecutor(store)
    held, release = threading.Event(), threading.Event()

    def hold(tx: Tx) -> str:
        held.set()
        release.wait(10)
        return threading.current_thread().name

    async def main() -> tuple[bool, bool]:
        await db.write(store.create_run_txn, _new_run("there"))
        blocked = asyncio.ensure_future(db.write(hold, inline=False))
        assert await asyncio.to_thread(held.wait, 10)
        read = asyncio.ensure_future(db.read(store.get_run, "there"))
        read_done = (await asyncio.wait([read], timeout=2))[0] == {read}
        # One writer: a write waits for the one in progress (and then shares the next
        # group with whatever else came meanwhile) instead of taking a second thread.
        second = asyncio.ensure_future(db.write(store.create_run_txn, _new_run("second")))
        assert (await asyncio.wait([second], timeout=0.5))[0] == set()
        release.set()
        await blocked
        await read
        await second
        held.clear()
        release.clear()
        slow_read = asyncio.ensure_future(db.read(hold))
        assert await asyncio.to_thread(held.wait, 10)
        write = asyncio.ensure_future(db.write(store.create_run_txn, _new_run("meanwhile")))
        write_done = (await asyncio.wait([write], timeout=2))[0] == {write}
        release.set()
        await slow_read
        await write
        return read_done, write_done

    try:
        read_done, write_done = asyncio.run(main())
    finally:
        db.close()
    postgres = store.backend == "postgres"
    assert (read_done, write_done) == (postgres, postgres)


def test_a_held_lock_fails_each_job_within_its_window(db_url: str) -> None:
    """While another connection holds the lock a write needs (SQLite's write lock, a
    PostgreSQL row lock), a job fails with StoreUnavailable once its window since
    submission has passed, not after the connection's 30 s busy timeout (or never, on
    PostgreSQL); jobs queued together share the wait (a group of ten is not ten windows
    one after the other); a window set in the context (the server's, per request) wins
    over the executor's own; and writes succeed once the lock is gone."""
    blocker = Blocker(db_url)
    store = open_store(db_url)
    db = DbExecutor(store, retry_for_s=30.0)

    def write(tx: Tx, run_id: str) -> str:
        blocker.write(tx, run_id)
        return run_id

    async def burst(count: int) -> tuple[list[Any], float]:
        token = retry_window.set(0.5)
        try:
            started = time.monotonic()
            jobs = [db.write(write, f"r{i}") for i in range(count)]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            return results, time.monotonic() - started
        finally:
            retry_window.reset(token)

    blocker.hold()
    try:
        results, took = asyncio.run(burst(10))
    finally:
        blocker.release()
    try:
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert took < 3, f"ten queued jobs failed after {took:.1f} s"
        assert asyncio.run(burst(1))[0] == ["r0"]
        with pytest.raises(RunNotFound):  # nothing refused was written
            db.read_sync(store.get_run, "r1")
    finally:
        db.close()
        blocker.close()


def test_a_pipeline_broken_by_a_lock_timeout_leaves_no_connection_that_fails_later(
    pg_db_url: str,
) -> None:
    """PostgreSQL: when a statement of a pipelined write fails (here the loop's 2 ms lock
    timeout), the server skips the statements queued behind it, and psycopg (3.3) still
    counts one it meant to prepare (on its 6th use) as prepared, so that every later use
    on that connection would fail with InvalidSqlStatementName (COMMIT too: then every
    write). Such writes, failed in the loop at each use of their statements up to the
    8th, leave no such connection: every query runs again, in the loop and in the
    thread, while the lock is held and once it is released."""
    blocker = Blocker(pg_db_url)
    store = open_store(pg_db_url)
    db = DbExecutor(store)
    ran: list[str] = []

    def lock_then_look(tx: Tx, run_id: str) -> Later[list[str]]:
        ran.append(threading.current_thread().name)
        tx.send("lock_runs", {"run_ids": ["held"]})
        # Sent without waiting for the lock: skipped by the server when it times out.
        sent = tx.send("run_statuses", {"ids": [run_id]})
        return Later(lambda: [r["status"] for r in sent.rows()])

    def nothing(tx: Tx) -> None:
        pass

    async def idle() -> None:
        # (Then a write from the loop runs in the loop, on the thread's connection.)
        await wait_until_async(
            lambda: db._idle() and db._writer.conn is not None,
            timeout=5,
            interval=0.001,
            what="the database thread idle, its connection open",
        )

    async def main() -> tuple[list[Any], list[Any], dict[str, str]]:
        await db.write(nothing)  # opens the writer's connection (the loop never does)
        blocker.hold()
        try:
            for _ in range(8):
                await idle()
                with pytest.raises(LockBusy):
                    await db.write(lock_then_look, "held", busy_fails=True)
                await db.write(nothing)  # (the thread opens a connection closed meanwhile)
        finally:
            blocker.release()
        in_loop = []
        for _ in range(8):
            await idle()
            in_loop.append(await db.write(lock_then_look, "held"))
        in_thread = [await asyncio.to_thread(db.write_sync, lock_then_look, "held")]
        in_thread += await asyncio.gather(
            *(asyncio.wrap_future(db.submit(True, lock_then_look, "held")) for _ in range(8))
        )
        await idle()
        return in_loop, in_thread, await db.read(store.run_statuses, ["held"], inline=True)

    token = retry_window.set(2.0)  # (a write that waits for the lock fails instead)
    try:
        in_loop, in_thread, statuses = asyncio.run(main())
    finally:
        retry_window.reset(token)
        db.close()
        blocker.close()
    assert ran[:8] == ["MainThread"] * 8  # each broke its pipeline in the loop
    assert in_loop == [["QUEUED"]] * 8
    assert ran[8:16] == ["MainThread"] * 8
    assert in_thread == [["QUEUED"]] * 9
    assert statuses == {"held": "QUEUED"}


def test_a_statement_the_server_no_longer_has_prepared_costs_a_new_connection_only(
    pg_db_url: str,
) -> None:
    """PostgreSQL: should psycopg's prepared statements and the server's disagree anyway
    (InvalidSqlStatementName, 26000), a write is retried on a new connection instead of
    failing, and a read in the loop that meets it leaves the writer's connection to be
    replaced (the loop then reads on the new one)."""
    store = open_store(pg_db_url)
    db = DbExecutor(store)
    seen: list[str] = []

    def look(tx: Tx) -> dict[str, str]:
        seen.append(threading.current_thread().name)
        return store.run_statuses(tx, ["none"])

    def forget(tx: Tx) -> None:
        # (DEALLOCATE of one name, unlike DEALLOCATE ALL, goes unnoticed by psycopg.)
        cur = tx.cursor.execute(
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE 'SELECT id, status%'"
        )
        (row,) = cur.fetchall()
        tx.cursor.execute(f'DEALLOCATE "{row["name"]}"'.encode())

    def nothing(tx: Tx) -> None:
        pass

    def prepared_then_forgotten() -> None:
        for _ in range(8):  # (psycopg prepares a statement on its 6th use)
            db.write_sync(look)
        db.write_sync(forget)

    async def in_the_loop() -> list[Any]:
        await wait_until_async(db._idle, timeout=5, interval=0.001, what="the database thread idle")
        answers = [await db.read(look, inline=True)]
        await db.write(nothing)  # (the thread opens a connection closed meanwhile)
        await wait_until_async(
            lambda: db._idle() and db._writer.conn is not None,
            timeout=5,
            interval=0.001,
            what="the database thread idle, its connection open",
        )
        answers.append(await db.read(look, inline=True))
        return answers

    try:
        prepared_then_forgotten()
        in_thread = db.write_sync(look)
        prepared_then_forgotten()
        in_loop = asyncio.run(in_the_loop())
    finally:
        db.close()
    assert in_thread == {}
    assert in_loop == [{}, {}]
    # The loop's first read met it (then the reading thread read); the second did not.
    assert seen[-3:] == ["MainThread", "runyard-db-1", "MainThread"]


def test_a_job_that_fails_leaves_the_next_one_a_connection_it_can_use(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A job's own error fails that job only, alone or in a group. On PostgreSQL the
    store closes the connection of a failed pipeline: the next job opens a new one at
    once, not after failing on the closed one (a retry, logged)."""
    store = open_store(db_url)
    db = DbExecutor(store)
    held, release = threading.Event(), threading.Event()

    def bad(tx: Tx) -> None:
        store.create_run_txn(tx, _new_run("bad"))
        raise ValueError("this job is wrong")

    def hold(tx: Tx) -> None:
        held.set()
        release.wait(10)

    caplog.set_level(logging.WARNING, logger="runyard.store")
    try:
        with pytest.raises(ValueError, match="this job is wrong"):
            db.write_sync(bad)
        assert db.write_sync(store.create_run_txn, _new_run("alone"))[1]
        blocking = db.submit(True, hold)
        assert held.wait(10)
        group: list[Future[Any]] = [
            db.submit(True, bad),
            db.submit(True, store.create_run_txn, _new_run("g")),
        ]
        release.set()
        blocking.result(10)
        with pytest.raises(ValueError, match="this job is wrong"):
            group[0].result(10)
        assert group[1].result(10)[1]
        with pytest.raises(RunNotFound):
            db.read_sync(store.get_run, "bad")
    finally:
        db.close()
    assert [r.getMessage() for r in caplog.records] == []


def _lose_connection(tx: Tx) -> None:
    """Fail as a connection lost after the commit does: on PostgreSQL the server ends
    the session (a transient error, and a closed connection); SQLite cannot lose its
    file's connection, so its transient error is raised as the driver would."""
    if isinstance(tx.cursor, sqlite3.Cursor):
        raise sqlite3.OperationalError("disk I/O error")
    tx.cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def test_a_job_whose_answer_fails_to_read_after_its_commit_never_runs_again(
    db_url: str,
) -> None:
    """A job's answer read after its COMMIT was sent (a Later) may fail, and with a
    transient error that the executor retries (a lost connection). The transaction has
    committed by then: the job must not run again (a claim twice claims other items and
    leaves the first ones to expire; an outcome twice finds itself fenced out). It fails
    with StoreUnavailable, alone, and only itself in a group or in the event loop; its
    writes stand, and the next job gets a working connection."""
    store = open_store(db_url)
    db = DbExecutor(store, retry_for_s=2.0)
    calls: list[str] = []

    def create(tx: Tx, run_id: str, lose: bool) -> Later[str]:
        calls.append(run_id)
        store.create_run_txn(tx, _new_run(run_id))

        def read() -> str:
            if lose:
                _lose_connection(tx)
            return run_id

        return Later(read)

    async def main() -> list[Any]:
        # Alone, in the database thread (the loop never opens the connection).
        answers: list[Any] = list(
            await asyncio.gather(db.write(create, "alone", True), return_exceptions=True)
        )
        # In a group: the other job of the group is answered.
        answers += await _as_one_group(
            db,
            lambda: [db.write(create, "grouped", True), db.write(create, "fine", False)],
            return_exceptions=True,
        )
        await db.write(create, "opens", False)
        await _thread_idle(db)  # the next runs in the loop
        answers += await asyncio.gather(db.write(create, "inline", True), return_exceptions=True)
        answers.append(await db.write(create, "after", False))
        return answers

    try:
        alone, grouped, fine, inline, after = asyncio.run(main())
        # Each ran once, and stays committed.
        assert sorted(calls) == ["after", "alone", "fine", "grouped", "inline", "opens"]
        for run_id in calls:
            assert db.read_sync(store.get_run, run_id).id == run_id
    finally:
        db.close()
    for failed in (alone, grouped, inline):
        assert isinstance(failed, StoreUnavailable)
        assert "committed" in str(failed)
    assert (fine, after) == ("fine", "after")


def test_a_read_failing_in_the_loop_hands_over_only_the_reads_of_its_pass(
    db_url: str,
) -> None:
    """Jobs submitted in one pass of the event loop run there; when a read among them
    fails, the reads go to the thread (which reports the failure), but the writes that
    committed before it are answered as they are, not run again by the thread."""
    store = open_store(db_url)
    db = DbExecutor(store)
    threads: list[str] = []

    def create(tx: Tx, run_id: str) -> str:
        threads.append(threading.current_thread().name)
        store.create_run_txn(tx, _new_run(run_id))
        return run_id

    async def main() -> list[Any]:
        await db.write(create, "opens")  # (the loop never opens the connection)
        await _thread_idle(db)
        return list(
            await asyncio.gather(
                db.write(create, "written"),
                db.read(store.get_run, "no-such-run", inline=True),
                return_exceptions=True,
            )
        )

    try:
        written, missing = asyncio.run(main())
    finally:
        db.close()
    assert written == "written"
    assert isinstance(missing, RunNotFound)
    assert threads == ["runyard-db-0", "MainThread"]  # the write once, in the loop


class _RefusedAnnouncements(PostgresStore):
    """A store whose announcements the server refuses, after the COMMIT (a NOTIFY
    payload of 8,000 bytes or more)."""

    @staticmethod
    def _publish(tx: Tx) -> Sent | None:
        tx.send("notify", {"channel": WAKE, "payload": "x" * 9000})
        return None


def test_an_announcement_failing_after_the_commit_fails_no_job_and_reruns_none(
    pg_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL sends a transaction's announcements after its COMMIT, in the same
    round trip; their failure is read with the COMMIT's answer. The transaction stands:
    its jobs are answered (announcements are hints: waiters poll), none runs again,
    alone, in a group or in the event loop, and the next job gets a new connection."""
    store = _RefusedAnnouncements(pg_db_url)
    db = DbExecutor(store)
    calls: list[str] = []
    ran_in: list[str] = []

    def create(tx: Tx, run_id: str) -> str:
        calls.append(run_id)
        ran_in.append(threading.current_thread().name)
        store.create_run_txn(tx, _new_run(run_id))  # (announces new work)
        return run_id

    def announce_nothing(tx: Tx) -> None:
        ran_in.append(threading.current_thread().name)

    async def main() -> list[Any]:
        answers: list[Any] = list(
            await asyncio.gather(db.write(create, "alone"), return_exceptions=True)
        )
        answers += await _as_one_group(
            db,
            lambda: [db.write(create, "grouped"), db.write(create, "beside")],
            return_exceptions=True,
        )
        await db.write(announce_nothing)  # (the thread opens a new connection)
        await _thread_idle(db)  # the next runs in the loop
        answers += await asyncio.gather(db.write(create, "inline"), return_exceptions=True)
        return answers

    caplog.set_level(logging.WARNING, logger="runyard.store")
    try:
        answers = asyncio.run(main())
        assert sorted(calls) == ["alone", "beside", "grouped", "inline"]  # each once
        for run_id in calls:
            assert db.read_sync(store.get_run, run_id).id == run_id
    finally:
        db.close()
    assert answers == ["alone", "grouped", "beside", "inline"]
    assert ran_in[-1] == "MainThread"  # (the last in the loop)
    assert all("could not send wake-ups" in r.getMessage() for r in caplog.records)
    assert len(caplog.records) == 3  # one a transaction
