"""Cancel, pause, resume, continue, fork, determinism: in-process."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from runyard import (
    Context,
    IllegalTransition,
    InvalidInput,
    RunNotFound,
    RunStatus,
    Runyard,
    RunyardError,
    WorkflowNotFound,
)
from runyard.worker.worker import Worker
from tests.conftest import running_worker
from tests.waiting import stays_true, wait_until, wait_until_async


def test_cancel_during_a_running_step(yard: Runyard) -> None:
    after: list[str] = []
    started = asyncio.Event()

    async def long_call() -> None:
        started.set()
        await asyncio.sleep(30)

    @yard.workflow
    async def stuck(ctx: Context) -> None:
        await ctx.step("long", long_call)
        after.append("ran on")

    async def main() -> None:
        async with running_worker(yard) as w:
            h = await yard.start("stuck")
            await asyncio.wait_for(started.wait(), 10)
            t0 = time.monotonic()
            assert await yard.cancel(h.id) == [h.id]
            run = await h.wait(timeout=5)
            assert run.status is RunStatus.CANCELED
            await wait_until_async(
                lambda: not w.inflight, timeout=5, what="the worker let go of the canceled run"
            )
            assert time.monotonic() - t0 < 5
            items = await yard.items(h.id)
            assert items[0].state == "failed" and items[0].error["code"] == "canceled"
        assert after == []
        with pytest.raises(IllegalTransition):
            await yard.cancel(h.id)
        with pytest.raises(RunNotFound):
            await yard.cancel("no-such-run")

    asyncio.run(main())


def test_a_worker_checks_no_run_for_its_own_outcomes(
    yard: Runyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker looks at the runs it executes when one changes (a cancel, a pause);
    the change its own outcome makes is no reason to (it read the status of every run
    in flight each time), while a cancel from outside still stops an execution."""
    checks: list[list[str]] = []
    real = yard.store.run_statuses

    def counted(tx: Any, run_ids: list[str]) -> dict[str, str]:
        checks.append(list(run_ids))
        return real(tx, run_ids)

    monkeypatch.setattr(yard.store, "run_statuses", counted)
    # Which run's change made the worker look (a look because the watcher was told
    # "anything may have changed", which a slow moment of the machine can cause on
    # SQLite, is not one of them).
    looked_for: list[str] = []
    real_on = Worker._on_run_change

    def on_run_change(self: Worker, run_id: str | None) -> None:
        before = self._control_now.is_set()
        real_on(self, run_id)
        if run_id is not None and self._control_now.is_set() and not before:
            looked_for.append(run_id)

    monkeypatch.setattr(Worker, "_on_run_change", on_run_change)
    started = asyncio.Event()

    @yard.workflow
    async def quick(ctx: Context, i: int) -> int:
        doubled: int = await ctx.step("double", lambda: i * 2)
        return doubled

    @yard.workflow
    async def stuck(ctx: Context) -> None:
        started.set()
        await asyncio.sleep(30)

    async def main() -> None:
        async with running_worker(yard):
            for i in range(20):
                assert await (await yard.start("quick", i)).result(timeout=10) == 2 * i
                await asyncio.sleep(0.03)  # past the control loop's pause between checks
            assert looked_for == []
            h = await yard.start("stuck")
            await asyncio.wait_for(started.wait(), 10)
            await yard.cancel(h.id)
            assert (await h.wait(timeout=10)).status is RunStatus.CANCELED
            await wait_until_async(
                lambda: [h.id] in checks, timeout=5, what="the worker looked at the canceled run"
            )
            assert h.id in looked_for

    asyncio.run(main())


def _end_run_uncommitted(yard: Runyard, db_url: str, run_id: str) -> Any:
    """A connection in a transaction that has written ``run_id``'s outcome (SUCCEEDED)
    as a worker does, not committed yet: commit or roll back on the returned connection."""
    if db_url.startswith("sqlite"):
        lite = yard.store.connect()
        lite.execute("BEGIN IMMEDIATE")
        lite.execute("UPDATE items SET state = 'completed' WHERE run_id = ?", (run_id,))
        lite.execute(
            "UPDATE runs SET status = 'SUCCEEDED', finished_at = ? WHERE id = ?",
            (time.time(), run_id),
        )
        return lite
    conn = psycopg.connect(db_url)
    conn.execute("UPDATE items SET state = 'completed' WHERE run_id = %s", (run_id,))
    conn.execute(
        "UPDATE runs SET status = 'SUCCEEDED', finished_at = extract(epoch FROM now()) "
        "WHERE id = %s",
        (run_id,),
    )
    return conn


def _someone_waits_for_a_lock(db_url: str) -> bool:
    if db_url.startswith("sqlite"):
        return True  # (a writer waiting for SQLite's lock shows nowhere: the caller watches)
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        return row is not None and row[0] > 0


@pytest.mark.parametrize("action", ["cancel", "pause"])
def test_a_control_action_racing_an_outcome_never_overwrites_it(
    yard: Runyard, db_url: str, action: str
) -> None:
    """A cancel (or pause) that selects a run while a worker is writing its outcome waits
    for that write and then sees the run ended: it is refused and the run stays
    SUCCEEDED (never a SUCCEEDED run turned CANCELED)."""

    @yard.workflow
    async def quick(ctx: Context) -> str:
        return "done"

    h = yard.sync.start("quick")
    yard.sync.get_run(h.id)  # (the yard's connections are open before the lock is taken)
    holder = _end_run_uncommitted(yard, db_url, h.id)
    pool = ThreadPoolExecutor(1)
    try:
        attempt = pool.submit(getattr(yard.sync, action), h.id)
        wait_until(
            lambda: _someone_waits_for_a_lock(db_url),
            timeout=10,
            interval=0.02,
            what=f"the {action} waiting for the lock",
        )
        stays_true(
            lambda: not attempt.done(),
            for_s=0.3,
            what=f"the {action} held up by the uncommitted outcome",
        )
        holder.commit()
        with pytest.raises(IllegalTransition, match="it is SUCCEEDED"):
            attempt.result(timeout=30)
    finally:
        holder.close()  # (rolls back what a failed test left uncommitted)
        pool.shutdown()
    run = yard.sync.get_run(h.id)
    assert run.status is RunStatus.SUCCEEDED and run.error is None


def test_bulk_cancel_by_ids_workflow_prefix_and_all(yard: Runyard) -> None:
    @yard.workflow
    async def idle(ctx: Context) -> None:
        return None

    @yard.workflow
    async def other(ctx: Context) -> None:
        return None

    async def main() -> None:
        for i in range(3):
            await yard.start("idle", run_id=f"batch-a-{i}")
            await yard.start("other", run_id=f"batch-b-{i}")
        await yard.start("idle", run_id="batch_x")  # "_" must not act as a wildcard
        await yard.start("idle", run_id="lone", delay=60)
        assert await yard.cancel(ids=["batch-a-0", "missing"]) == ["batch-a-0"]
        assert await yard.cancel(ids=["missing"]) == []  # a selection, not a single-run action
        assert await yard.cancel(prefix="batch-a-") == ["batch-a-1", "batch-a-2"]
        assert await yard.cancel(workflow="other") == ["batch-b-0", "batch-b-1", "batch-b-2"]
        assert await yard.cancel(prefix="batch-") == []
        assert sorted(await yard.cancel(all=True)) == ["batch_x", "lone"]
        page = await yard.list_runs(status="CANCELED", limit=100)
        assert len(page.items) == 8

    asyncio.run(main())


def test_pause_then_resume_continues_from_checkpoint(yard: Runyard) -> None:
    executed: list[str] = []
    gate = asyncio.Event()

    async def first() -> int:
        executed.append("first")
        await gate.wait()
        return 1

    async def second() -> int:
        executed.append("second")
        return 2

    @yard.workflow
    async def pausable(ctx: Context) -> int:
        a = await ctx.step("first", first)
        b = await ctx.step("second", second)
        return int(a + b)

    async def main() -> None:
        async with running_worker(yard) as w:
            h = await yard.start("pausable")
            await wait_until_async(
                lambda: executed == ["first"], timeout=10, what="step first executing"
            )
            assert (await yard.pause(h.id)).status is RunStatus.PAUSED
            assert (await h.get()).status is RunStatus.PAUSED
            gate.set()  # the step finishes; the run stops at the next boundary
            await wait_until_async(
                lambda: not w.inflight, timeout=10, what="the paused run's execution ended"
            )
            assert executed == ["first"]
            run = await h.get()
            assert run.status is RunStatus.PAUSED
            items = await yard.items(h.id)
            assert items[0].state == "processing"
            await yard.resume(h.id)
            assert await h.result(timeout=20) == 3
        assert executed == ["first", "second"]
        statuses = [t.to_status for t in await yard.transitions(h.id)]
        assert statuses[-3:] == ["PAUSED", "QUEUED", "RUNNING"] or "PAUSED" in statuses

    asyncio.run(main())


def test_resume_after_failed_reruns_only_from_the_failed_step(yard: Runyard) -> None:
    calls: list[str] = []
    broken = {"on": True}

    def step(name: str) -> str:
        calls.append(name)
        if name == "c" and broken["on"]:
            raise RuntimeError("c is broken")
        return name

    @yard.workflow
    async def abc(ctx: Context) -> list[str]:
        return [await ctx.step(n, step, n) for n in ("a", "b", "c", "d")]

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("abc")
            run = await h.wait(timeout=20)
            assert run.status is RunStatus.FAILED and "c is broken" in run.error["message"]
            assert calls == ["a", "b", "c"]
            broken["on"] = False
            # The run as the resume left it, even if a worker claims it at once.
            assert (await yard.resume(h.id)).status is RunStatus.QUEUED
            assert await h.result(timeout=20) == ["a", "b", "c", "d"]
        assert calls == ["a", "b", "c", "c", "d"]
        with pytest.raises(IllegalTransition):
            await yard.resume(h.id)

    asyncio.run(main())


def test_fork_from_step_3_reruns_steps_3_onward(yard: Runyard) -> None:
    calls: list[tuple[str, Any]] = []

    def step(name: str, x: Any) -> Any:
        calls.append((name, x))
        return f"{name}{x}"

    @yard.workflow
    async def five(ctx: Context, x: int) -> list[str]:
        return [await ctx.step(f"s{i}", step, f"s{i}", x) for i in range(1, 6)]

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("five", 1)
            assert await h.result(timeout=20) == ["s11", "s21", "s31", "s41", "s51"]
            calls.clear()
            f = await yard.fork(h.id, 3, new_run_id="forked-1")
            assert await f.result(timeout=20) == ["s11", "s21", "s31", "s41", "s51"]
            assert [c[0] for c in calls] == ["s3", "s4", "s5"]
            calls.clear()
            f2 = await yard.fork(h.id, "s4", input=2)
            assert await f2.result(timeout=20) == ["s11", "s21", "s31", "s42", "s52"]
            assert [c[0] for c in calls] == ["s4", "s5"]
            assert (await f2.get()).parent_id == h.id

    asyncio.run(main())


def _register_five(yard: Runyard) -> None:
    @yard.workflow
    async def five(ctx: Context, x: int) -> list[str]:
        return [await ctx.step(f"s{i}", lambda i=i: f"s{i}{x}") for i in range(1, 6)]


def test_fork_refuses_bad_arguments_and_writes_nothing(yard: Runyard) -> None:
    """A new input is validated as a start's is, a version must exist, and from_step
    must be a recorded step or the one after the last; each refusal names its field and
    creates no run."""
    _register_five(yard)

    async def refused(exc: type[RunyardError], field: str, from_step: Any, **kw: Any) -> None:
        kw.setdefault("new_run_id", "refused")
        with pytest.raises(exc) as info:
            await yard.fork("src", from_step, **kw)
        assert field in [d["field"] for d in info.value.details], info.value

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("five", 1, run_id="src")
            assert await h.result(timeout=20) == ["s11", "s21", "s31", "s41", "s51"]
        await refused(InvalidInput, "input", 2, input="not a number")
        await refused(InvalidInput, "input", 2, input={"x": 1})
        await refused(WorkflowNotFound, "version", 2, version="no-such-version")
        await refused(WorkflowNotFound, "version", 2, version="no-such-version", input=3)
        for bad in (0, -1, 7, 2**40, True, 2.0, "no-such-step"):
            await refused(InvalidInput, "from_step", bad)
        await refused(InvalidInput, "new_run_id", 2, new_run_id="")
        with pytest.raises(RunNotFound):
            await yard.fork("no-such-run", 1)
        assert [r.id for r in (await yard.list_runs()).items] == ["src"]
        # The step after the last one is a fork that reuses every checkpoint.
        f = await yard.fork("src", 6, input=2)
        async with running_worker(yard):
            assert await f.result(timeout=20) == ["s11", "s21", "s31", "s41", "s51"]

    asyncio.run(main())


def test_a_fork_with_an_existing_run_id_returns_that_run(yard: Runyard) -> None:
    """Idempotent like a start: forking again with the same run id returns the run the
    first fork made, even while that fork's transaction is still open (concurrent forks
    with one id give one run, and no error)."""
    _register_five(yard)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("five", 1, run_id="src")
            await h.result(timeout=20)
        first = await yard.fork("src", 3, new_run_id="fork-a")
        again = await yard.fork("src", 2, new_run_id="fork-a", input=5)
        assert first.created and not again.created and again.id == "fork-a"
        assert (await again.get()).parent_id == "src"
        # An id taken by a run that is no fork at all is that run, as for a start.
        assert not (await yard.fork("src", 1, new_run_id="src")).created

    asyncio.run(main())
    # Another connection's fork with the same id, not committed yet: this one waits
    # for it and returns its run.
    st = yard.store
    conn = st.connect()
    pool = ThreadPoolExecutor(1)
    held = st.transaction(conn, write=True, pipeline=False)
    try:
        tx = held.__enter__()
        _, created = st.fork_txn(tx, "src", "fork-b", 2, None, None)
        assert created
        attempt = pool.submit(yard.sync.fork, "src", 4, new_run_id="fork-b")
        wait_until(
            lambda: _someone_waits_for_a_lock(yard.settings.database_url),
            timeout=10,
            interval=0.02,
            what="the fork waiting for the lock",
        )
        stays_true(
            lambda: not attempt.done(),
            for_s=0.3,
            what="the fork held up by the uncommitted fork of the same id",
        )
        held.__exit__(None, None, None)
        forked = attempt.result(timeout=30)
        assert forked.id == "fork-b" and not forked.created
    finally:
        pool.shutdown()
        st.close_connection(conn)
    run = yard.sync.get_run("fork-b")
    assert run.parent_id == "src"
    assert [s.name for s in yard.sync.steps("fork-b")] == ["s1"]  # the first fork's
    assert len(yard.sync.list_runs(limit=100).items) == 3


def test_continue_runs_the_next_incremental_iteration(yard: Runyard) -> None:
    source = {"rows": [1, 2, 3]}

    @yard.workflow
    async def sync_rows(ctx: Context) -> dict[str, Any]:
        seen = ctx.sync.state or 0
        new = [r for r in source["rows"] if r > seen]
        for r in new:
            await ctx.emit({"row": r}, key=f"row-{r}")
        await ctx.sync.save(max(source["rows"]))
        return {"iteration": ctx.iteration, "new": len(new)}

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("sync_rows", sync_mode="incremental", max_results=100)
            assert await h.result(timeout=20) == {"iteration": 1, "new": 3}
            source["rows"] = [1, 2, 3, 4, 5]
            await yard.continue_(h.id)
            await wait_until_async(
                lambda: _iteration(yard, h.id, 2), timeout=20, what="iteration 2 ended"
            )
            run = await yard.wait(h.id, 20)
            assert run.result == {"iteration": 2, "new": 2}
        outs = await yard.outputs(h.id)
        assert [o.data["row"] for o in outs] == [1, 2, 3, 4, 5]
        assert [o.iteration for o in outs] == [1, 1, 1, 2, 2]

    asyncio.run(main())


async def _iteration(yard: Runyard, run_id: str, n: int) -> bool:
    run = await yard.get_run(run_id)
    return run.iteration == n and run.terminal


def test_emit_key_dedupes_across_iterations(yard: Runyard) -> None:
    @yard.workflow
    async def same(ctx: Context) -> None:
        await ctx.emit({"v": ctx.iteration}, key="only-once")

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("same")
            await h.result(timeout=20)
            await yard.continue_(h.id)
            await wait_until_async(
                lambda: _iteration(yard, h.id, 2), timeout=20, what="iteration 2 ended"
            )
        assert [o.data for o in await yard.outputs(h.id)] == [{"v": 1}]

    asyncio.run(main())


def test_non_determinism_fails_with_a_clear_error(yard: Runyard) -> None:
    @yard.workflow
    async def drifting(ctx: Context) -> str:
        await ctx.step("fetch", lambda: 1)
        await ctx.sleep("nap", 0.6)
        return "v1"

    async def changed(ctx: Context) -> str:
        await ctx.step("download", lambda: 1)
        await ctx.sleep("nap", 0.6)
        return "v2"

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("drifting")
            await wait_until_async(
                lambda: _waiting(yard, h.id), timeout=10, what="the run sleeping"
            )
            yard.workflows["drifting"].fn = changed  # a deploy that renamed a step
            run = await h.wait(timeout=20)
        assert run.status is RunStatus.FAILED
        assert run.error["code"] == "non_determinism"
        assert "'download'" in run.error["message"] and "'fetch'" in run.error["message"]

    asyncio.run(main())


async def _waiting(yard: Runyard, run_id: str) -> bool:
    return (await yard.get_run(run_id)).waiting_for == "sleep:nap"


def test_patched_keeps_old_runs_on_the_old_path(yard: Runyard) -> None:
    @yard.workflow
    async def evolving(ctx: Context) -> str:
        await ctx.step("one", lambda: 1)
        await ctx.sleep("nap", 0.6)
        await ctx.step("two", lambda: 2)
        return "old"

    async def new_code(ctx: Context) -> str:
        if ctx.patched("extra-step"):
            await ctx.step("extra", lambda: 0)
        await ctx.step("one", lambda: 1)
        await ctx.sleep("nap", 0.6)
        await ctx.step("two", lambda: 2)
        return "patched" if ctx.patched("final") else "old-path"

    async def main() -> None:
        async with running_worker(yard):
            old = await yard.start("evolving")
            await wait_until_async(
                lambda: _waiting(yard, old.id), timeout=10, what="the old run sleeping"
            )
            yard.workflows["evolving"].fn = new_code
            assert await old.result(timeout=20) == "patched"
            new = await yard.start("evolving")
            assert await new.result(timeout=20) == "patched"
        assert [s.name for s in await yard.steps(old.id)] == ["one", "nap", "two", "final"]
        assert [s.name for s in await yard.steps(new.id)][:2] == ["extra-step", "extra"]

    asyncio.run(main())
