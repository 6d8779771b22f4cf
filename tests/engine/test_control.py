"""Cancel, pause, resume, continue, fork, determinism: in-process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from runyard import Context, IllegalTransition, RunNotFound, RunStatus, Runyard
from tests.conftest import running_worker, wait_until


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
        async with running_worker(yard):
            h = await yard.start("stuck")
            await asyncio.wait_for(started.wait(), 10)
            t0 = time.monotonic()
            assert await yard.cancel(h.id) == [h.id]
            run = await h.wait(timeout=5)
            assert run.status is RunStatus.CANCELED
            await asyncio.sleep(0.5)
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
    started = asyncio.Event()

    @yard.workflow
    async def quick(ctx: Context, i: int) -> int:
        return await ctx.step("double", lambda: i * 2)

    @yard.workflow
    async def stuck(ctx: Context) -> None:
        started.set()
        await asyncio.sleep(30)

    async def main() -> None:
        async with running_worker(yard):
            for i in range(20):
                assert await (await yard.start("quick", i)).result(timeout=10) == 2 * i
                await asyncio.sleep(0.03)  # past the control loop's pause between checks
            assert checks == []
            h = await yard.start("stuck")
            await asyncio.wait_for(started.wait(), 10)
            await yard.cancel(h.id)
            assert (await h.wait(timeout=10)).status is RunStatus.CANCELED
            await wait_until(lambda: [h.id] in checks, 5)

    asyncio.run(main())


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
        async with running_worker(yard):
            h = await yard.start("pausable")
            await wait_until(lambda: executed == ["first"], 10)
            assert (await yard.pause(h.id)).status is RunStatus.PAUSED
            assert (await h.get()).status is RunStatus.PAUSED
            gate.set()  # the step finishes; the run stops at the next boundary
            await asyncio.sleep(1.0)
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
            await wait_until(lambda: _iteration(yard, h.id, 2), 20)
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
            await wait_until(lambda: _iteration(yard, h.id, 2), 20)
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
            await wait_until(lambda: _waiting(yard, h.id), 10)
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
            await wait_until(lambda: _waiting(yard, old.id), 10)
            yard.workflows["evolving"].fn = new_code
            assert await old.result(timeout=20) == "patched"
            new = await yard.start("evolving")
            assert await new.result(timeout=20) == "patched"
        assert [s.name for s in await yard.steps(old.id)] == ["one", "nap", "two", "final"]
        assert [s.name for s in await yard.steps(new.id)][:2] == ["extra-step", "extra"]

    asyncio.run(main())
