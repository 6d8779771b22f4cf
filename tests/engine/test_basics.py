"""Workflows, steps, outputs, credits, multi-input runs, retries, timeouts: in-process."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from runyard import (
    Context,
    NonRetryableError,
    RateLimited,
    Run,
    RunFailed,
    RunStatus,
    Runyard,
    SyncContext,
)
from runyard.rules import generate_run_id
from tests.conftest import running_worker
from tests.waiting import wait_until_async


class Company(BaseModel):
    url: str
    size: int = 1


def test_three_steps_emit_charge_progress(yard: Runyard) -> None:
    @yard.workflow
    async def enrich(ctx: Context, company: Company) -> dict[str, Any]:
        page = await ctx.step("fetch", lambda: {"name": company.url.upper()})
        await ctx.charge("enrich", 50)
        await ctx.emit({"url": company.url, "name": page["name"]})
        await ctx.progress(0.5, "fetched")
        n = await ctx.step("count", lambda: company.size * 2)
        return {"name": page["name"], "n": n}

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("enrich", {"url": "acme", "size": 3})
            assert await h.result(timeout=20) == {"name": "ACME", "n": 6}
            run = await h.get()
            assert run.status is RunStatus.SUCCEEDED and run.credits == 50
            assert run.progress == 1.0
            steps = await yard.steps(h.id)
            assert [(s.position, s.kind, s.name) for s in steps] == [
                (1, "step", "fetch"),
                (2, "charge", "charge:enrich"),
                (3, "emit", "emit"),
                (4, "step", "count"),
            ]
            outs = await yard.outputs(h.id)
            assert [o.data for o in outs] == [{"url": "acme", "name": "ACME"}]
            statuses = [t.to_status for t in await yard.transitions(h.id)]
            assert statuses == ["QUEUED", "RUNNING", "SUCCEEDED"]

    asyncio.run(main())


def test_sync_workflow_and_sync_steps(yard: Runyard) -> None:
    @yard.workflow
    def add(ctx: SyncContext, x: int) -> int:
        a = ctx.step("a", lambda: x + 1)
        ctx.emit({"a": a})
        return int(ctx.step("b", lambda: a * 10))

    async def main() -> None:
        async with running_worker(yard):
            assert await (await yard.start(add, 4)).result(timeout=20) == 50

    asyncio.run(main())
    assert yard.sync.get_run(yard.sync.list_runs().items[0].id).result == 50


def test_multi_input_partial_success_and_discarded_inputs(yard: Runyard) -> None:
    @yard.workflow
    async def square(ctx: Context, x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return int(await ctx.step("sq", lambda: x * x))

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start(
                "square",
                inputs=[1, {"input": 2, "custom_data": {"row": 2}}, "bad", -1],
            )
            run = await h.wait(timeout=20)
            assert run.status is RunStatus.PARTIAL_SUCCEEDED
            assert run.result == [1, 4, None, None]
            items = {i.idx: i for i in await yard.items(h.id)}
            assert items[0].state == "completed" and items[1].custom_data == {"row": 2}
            assert items[2].state == "discarded" and "inputs[2]" in str(items[2].error)
            assert items[3].state == "failed" and items[3].error["message"] == "negative"
            assert run.error["failed"] == 1 and run.error["discarded"] == 1

            ok = await yard.start("square", inputs=[2, 3])
            assert await ok.result(timeout=20) == [4, 9]

            invalid = await yard.start("square", inputs=["x", "y"])
            assert (await invalid.get()).status is RunStatus.INVALID
            # The error says what is wrong (RunFailed carries it), and each input's error.
            with pytest.raises(RunFailed) as failed:
                await invalid.result(timeout=5)
            error = failed.value.details
            assert error["message"].startswith("all 2 inputs are invalid; the first: ")
            assert "inputs[0]" in error["message"] and len(error["inputs"]) == 2
            assert str(failed.value).startswith(f"run {invalid.id} ended INVALID: all 2 inputs")

    asyncio.run(main())


def test_idempotent_run_id_with_20_concurrent_starts(yard: Runyard) -> None:
    executions: list[str] = []

    @yard.workflow
    async def once(ctx: Context, x: int) -> int:
        await ctx.step("work", lambda: executions.append(ctx.run_id))
        return x

    async def main() -> None:
        handles = await asyncio.gather(
            *(yard.start("once", 7, run_id="order-42") for _ in range(20))
        )
        assert sum(h.created for h in handles) == 1
        async with running_worker(yard) as w:
            assert await handles[0].result(timeout=20) == 7
            await wait_until_async(
                lambda: not w.inflight, timeout=10, what="the worker done with order-42"
            )
        assert executions == ["order-42"]
        page = await yard.list_runs()
        assert [r.id for r in page.items] == ["order-42"]

    asyncio.run(main())


def test_delayed_run_goes_scheduled_queued_running(yard: Runyard) -> None:
    @yard.workflow
    async def later(ctx: Context) -> str:
        return "done"

    async def main() -> None:
        async with running_worker(yard):
            t0 = time.time()
            h = await yard.start("later", delay=1.0)
            assert (await h.get()).status is RunStatus.SCHEDULED
            assert await h.result(timeout=20) == "done"
            run = await h.get()
            assert run.started_at is not None and run.started_at - t0 >= 0.95
            assert [t.to_status for t in await yard.transitions(h.id)] == [
                "SCHEDULED",
                "QUEUED",
                "RUNNING",
                "SUCCEEDED",
            ]

    asyncio.run(main())


def test_priority_claims_higher_first(yard: Runyard) -> None:
    order: list[int] = []

    @yard.workflow
    async def prio(ctx: Context, p: int) -> None:
        order.append(p)

    async def main() -> None:
        for p in (1, 5, 3, 9, 0):
            await yard.start("prio", p, priority=p)
        async with running_worker(yard, concurrency=1):
            await wait_until_async(lambda: len(order) == 5, timeout=20, what="all 5 runs executed")
        assert order == [9, 5, 3, 1, 0]

    asyncio.run(main())


def test_step_retries_nonretryable_and_rate_limited(yard: Runyard) -> None:
    calls: dict[str, int] = {"flaky": 0, "fatal": 0, "limited": 0}

    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError(f"try {calls['flaky']}")
        return "ok"

    def fatal() -> None:
        calls["fatal"] += 1
        raise NonRetryableError("bad request")

    def limited() -> str:
        calls["limited"] += 1
        if calls["limited"] == 1:
            raise RateLimited("slow down", retry_after=0.3)
        return "through"

    @yard.workflow(retries=5)
    async def retrying(ctx: Context, which: str) -> str:
        fn = {"flaky": flaky, "fatal": fatal, "limited": limited}[which]
        return str(await ctx.step(which, fn))

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("retrying", "flaky")
            assert await h.result(timeout=20) == "ok"
            attempts = await yard.attempts(h.id)
            assert [a.attempt for a in attempts] == [1, 2]
            assert attempts[0].error["message"] == "try 1"
            assert (await yard.steps(h.id))[0].attempts == 3

            h2 = await yard.start("retrying", "fatal")
            with pytest.raises(RunFailed) as info:
                await h2.result(timeout=20)
            assert "bad request" in str(info.value) and calls["fatal"] == 1

            t0 = time.monotonic()
            h3 = await yard.start("retrying", "limited")
            assert await h3.result(timeout=20) == "through"
            assert time.monotonic() - t0 >= 0.3

    asyncio.run(main())


def test_long_backoff_hands_the_item_back(yard: Runyard) -> None:
    calls = 0

    def limited() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited(retry_after=1.5)
        return "later"

    @yard.workflow(retries=2)
    async def backoff(ctx: Context) -> str:
        return str(await ctx.step("call", limited))

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("backoff")

            async def backing_off() -> Run | None:
                run = await h.get()
                return run if run.waiting_for == "retry:call" else None

            run = await wait_until_async(
                backing_off, timeout=10, what="the run handed back for its backoff"
            )
            assert run.status is RunStatus.RUNNING and run.waiting_for == "retry:call"
            assert await h.result(timeout=20) == "later"

    asyncio.run(main())


def test_step_and_run_timeouts_fail_the_run(yard: Runyard) -> None:
    @yard.workflow
    async def slow_step(ctx: Context) -> None:
        await ctx.step("slow", asyncio.sleep, 5, timeout=0.2)

    @yard.workflow(timeout=0.5)
    async def slow_run(ctx: Context) -> None:
        await ctx.step("slow", asyncio.sleep, 5)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("slow_step")
            run = await h.wait(timeout=20)
            assert run.status is RunStatus.FAILED and "longer than 0.2" in run.error["message"]
            h2 = await yard.start("slow_run")
            run2 = await h2.wait(timeout=20)
            assert run2.status is RunStatus.FAILED and run2.error["code"] == "timeout"

    asyncio.run(main())


def test_on_failure_runs_once(yard: Runyard) -> None:
    seen: list[Any] = []

    async def handler(info: Any) -> None:
        seen.append((info.run_id, info.error["message"]))

    @yard.workflow(on_failure=handler)
    async def doomed(ctx: Context) -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("doomed")
            assert (await h.wait(timeout=20)).status is RunStatus.FAILED
            await _hooks_ended(yard, h.id, 1)
        assert seen == [(h.id, "boom")]

    asyncio.run(main())


def test_on_failure_once_per_failure(yard: Runyard) -> None:
    """A resumed run that fails again gets its handler again; a handler's own outcome
    (here: a failure) never schedules another; the run stays FAILED throughout."""
    seen: list[str] = []
    attempts = 0

    async def handler(info: Any) -> None:
        seen.append(info.error["message"])
        raise RuntimeError("the handler fails too")

    @yard.workflow(on_failure=handler)
    async def twice_doomed(ctx: Context) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError(f"boom {attempts}")

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("twice_doomed")
            assert (await h.wait(timeout=20)).status is RunStatus.FAILED
            await _hooks_ended(yard, h.id, 1)
            assert seen == ["boom 1"]
            await yard.resume(h.id)
            assert (await h.wait(timeout=20)).status is RunStatus.FAILED
            await _hooks_ended(yard, h.id, 2)
            assert seen == ["boom 1", "boom 2"]
            assert (await h.status()) is RunStatus.FAILED
        hooks = await yard.db.read(functools.partial(yard.store.get_items, kinds=("hook",)), h.id)
        assert sorted((i.idx, i.state) for i in hooks) == [(-2, "failed"), (-1, "failed")]

    asyncio.run(main())


async def _hooks_ended(yard: Runyard, run_id: str, at_least: int) -> None:
    """Until ``run_id`` has ``at_least`` failure hooks and every one of them has ended: a
    hook that wrongly scheduled another would leave that one to run, so this waits
    for it too (and the test then sees it)."""

    async def ended() -> bool:
        hooks = await yard.db.read(functools.partial(yard.store.get_items, kinds=("hook",)), run_id)
        return len(hooks) >= at_least and all(i.state in ("completed", "failed") for i in hooks)

    await wait_until_async(ended, timeout=10, what=f"{at_least} failure hooks of {run_id} ended")


def test_map_fans_out_into_items(yard: Runyard) -> None:
    running = 0
    peak = 0

    async def fetch(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return n * 10

    @yard.workflow
    async def fan(ctx: Context, n: int) -> int:
        out = await ctx.map("people", fetch, range(n), concurrency=2)
        return sum(out)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("fan", 6)
            assert await h.result(timeout=20) == 150
        items = await yard.items(h.id)
        mapped = [i for i in items if i.kind == "map"]
        assert len(mapped) == 6 and all(i.state == "completed" for i in mapped)
        assert [i.result for i in mapped] == [0, 10, 20, 30, 40, 50]
        assert peak == 2

    asyncio.run(main())


def test_generated_run_ids_are_unique_and_well_formed_across_threads() -> None:
    """Run ids take their random part from a buffer of the OS generator's bytes, refilled
    as it runs out; four threads drawing 12,000 ids (several refills) never share one."""
    ids: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        out.extend(generate_run_id() for _ in range(3000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in ids for i in out]
    assert len(set(every)) == len(every) == 12000
    assert all(re.fullmatch(r"run_[0-9a-f]{24}", i) for i in every)
    assert all(out == sorted(out, key=lambda i: i[4:16]) for out in ids)  # time first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_does_not_repeat_its_parents_run_ids() -> None:
    generate_run_id()  # the parent has digits in hand
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(generate_run_id()[16:] for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {generate_run_id()[16:] for _ in range(50)}
    assert len(child) == 50 and not child & parent
