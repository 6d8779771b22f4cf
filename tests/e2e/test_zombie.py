"""A worker frozen (SIGSTOP) in the middle of a step outlives its lease; another worker
finishes the run; the frozen one wakes (SIGCONT), completes its step and tries to write.
Its writes are refused: the run keeps exactly one outcome, the second worker's."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from runyard import RunStatus
from runyard.models import TERMINAL
from runyard.store.sqlite import sqlite_path
from tests.apps.e2e_support import read_ledger, spawn, wait_registered
from tests.conftest import WorkerProcess, make_yard
from tests.waiting import stays_true_async, wait_until_async

BLOCK_S = 4.0  # how long step two blocks on its first execution (tests/apps/zombie.py)


def _database_is_free(db_url: str) -> bool:
    """True when no worker holds a transaction open (so a frozen one blocks nobody)."""
    if db_url.startswith("sqlite"):
        lite = sqlite3.connect(sqlite_path(db_url), timeout=0.2, isolation_level=None)
        try:
            lite.execute("BEGIN IMMEDIATE")
            lite.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            lite.close()
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = 'runyard' AND state <> 'idle'"
        ).fetchone()
        return row is not None and row[0] == 0


async def freeze(w: WorkerProcess, db_url: str) -> None:
    """SIGSTOP ``w`` between two of its transactions.

    A process frozen inside a transaction would hold the SQLite write lock, or row locks
    that PostgreSQL's SKIP LOCKED claims step around, until it wakes: a different
    scenario (a stuck lock holder) from the one under test (a stale lease holder)."""

    async def frozen_outside_a_transaction() -> bool:
        w.signal(signal.SIGSTOP)
        await wait_until_async(lambda: _stopped(w.pid), timeout=5, what=f"{w.pid} stopped")
        if await asyncio.to_thread(_database_is_free, db_url):
            return True
        w.signal(signal.SIGCONT)  # (and try again a moment later)
        return False

    await wait_until_async(
        frozen_outside_a_transaction,
        timeout=10,
        interval=0.01,
        what="the worker frozen outside a transaction",
    )


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (by a signal): its state in /proc is T."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2] == "T"


@pytest.mark.parametrize("workflow", ["zombie_thread", "zombie_loop"])
def test_a_worker_waking_after_losing_its_lease_cannot_overwrite_the_outcome(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess], workflow: str
) -> None:
    """``zombie_thread`` blocks in the thread pool: on waking, A's heartbeat and its step
    race, and A may stop before it writes. ``zombie_loop`` blocks A's event loop: on
    waking, A goes straight from the step to writing the outcome, so the fence is
    exercised every time."""
    ledger_path = tmp_path / "ledger.txt"
    env = {"RUNYARD_TEST_MARKER": str(tmp_path / "marker")}

    def lines(tag: str, pid: int) -> int:
        return sum(1 for e in read_ledger(ledger_path) if e.fields[0] == tag and e.pid == pid)

    def worker() -> WorkerProcess:
        return spawn(worker_procs, "zombie", db_url, tmp_path, concurrency=1, lease_s=1.5, env=env)

    async def main() -> None:
        yard = make_yard(db_url)
        try:
            a = worker()
            await wait_registered(yard, [workflow])
            h = await yard.start(workflow)
            await wait_until_async(
                lambda: lines("two-start", a.pid) == 1, timeout=20, what="A in step two"
            )
            await freeze(a, db_url)

            b = worker()
            done = await yard.wait(h.id, timeout=30)
            assert done.status is RunStatus.SUCCEEDED, (done.status, done.error)
            # Step one was checkpointed by A and replayed by B, step two executed by B.
            assert done.result == {"one": a.pid, "pid": b.pid}
            assert lines("two-start", b.pid) == 1 and lines("two-end", b.pid) == 1
            assert lines("two-end", a.pid) == 0, "A ran while frozen"

            # Wake A once its step's block has elapsed, so that the step returns at once
            # and A tries to checkpoint it and to write the run's outcome with a fence
            # that no longer matches.
            began = next(
                e.at
                for e in read_ledger(ledger_path)
                if e.fields[0] == "two-start" and e.pid == a.pid
            )
            await asyncio.sleep(max(0.0, began + BLOCK_S + 0.3 - time.time()))
            a.signal(signal.SIGCONT)
            await wait_until_async(
                lambda: lines("two-end", a.pid) == 1, timeout=15, what="A through step two"
            )

            async def as_b_left_it() -> bool:
                run = await yard.get_run(h.id)
                return (run.status, run.result, run.finished_at) == (
                    done.status,
                    done.result,
                    done.finished_at,
                )

            # Several heartbeats, recovery passes and claims of A, none of which may
            # change the run (A gives no sign of having made them all).
            await stays_true_async(
                as_b_left_it, for_s=3.0, interval=0.25, what="the run as B ended it"
            )

            run = await yard.get_run(h.id)
            steps = await yard.steps(h.id)
            transitions = await yard.transitions(h.id)
            items = await yard.items(h.id)
        finally:
            await yard.aclose()

        assert run.status is RunStatus.SUCCEEDED
        assert run.result == {"one": a.pid, "pid": b.pid}
        assert run.finished_at == done.finished_at
        assert run.error is None
        assert [(s.position, s.name, s.status, s.result) for s in steps] == [
            (1, "one", "completed", a.pid),
            (2, "two", "completed", b.pid),
        ]
        terminal = [t for t in transitions if t.to_status in {s.value for s in TERMINAL}]
        assert len(terminal) == 1 and terminal[0].to_status == "SUCCEEDED", transitions
        assert [(i.idx, i.state.value, i.result) for i in items] == [
            (0, "completed", {"one": a.pid, "pid": b.pid})
        ]
        assert lines("one", a.pid) == 1 and lines("one", b.pid) == 0
        assert a.alive(), "the worker that lost its lease died instead of stepping back"

        # What A tried to write (tests/apps/zombie.py spies on the store): after step
        # one's checkpoint, everything it wrote was refused by the fence.
        writes = [
            (e.pid, e.fields[1], e.fields[3])
            for e in read_ledger(ledger_path)
            if e.fields[0] == "write"
        ]
        print(f"{workflow}: writes (pid, what, status): {writes}, A = {a.pid}, B = {b.pid}")
        assert [w for w in writes if w[0] == a.pid and w[2] != "refused"] == [
            (a.pid, "checkpoint_txn", "RUNNING")
        ], writes
        if workflow == "zombie_loop":
            assert (a.pid, "complete_item_txn", "refused") in writes, writes

    asyncio.run(main())
