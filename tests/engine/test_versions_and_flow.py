"""Workflow versions keep runs on the code they started with; per-trigger flow control."""

from __future__ import annotations

import asyncio
import itertools
import time

from runyard import Context, FlowControl, RunStatus, Runyard
from tests.conftest import make_yard, running_worker


def test_a_new_version_does_not_take_runs_of_the_old_one(db_url: str) -> None:
    old, new = make_yard(db_url), make_yard(db_url)

    @old.workflow(name="greet", version="1")
    async def greet_v1(ctx: Context) -> str:
        return "v1"

    @new.workflow(name="greet", version="2")
    async def greet_v2(ctx: Context) -> str:
        return "v2"

    async def main() -> None:
        started_on_v1 = await old.start("greet")
        started_on_v2 = await new.start("greet")
        async with running_worker(new):
            assert await started_on_v2.result(timeout=20) == "v2"
            await asyncio.sleep(0.5)
            assert (await started_on_v1.get()).status is RunStatus.QUEUED  # not stranded:
        async with running_worker(old):  # a worker that still serves v1 runs it
            assert await started_on_v1.result(timeout=20) == "v1"
        by_name = await new.start("greet", version="1")
        assert (await by_name.get()).workflow_version == "1"

    try:
        asyncio.run(main())
    finally:
        old.close()
        new.close()


def test_flow_control_given_with_the_trigger(yard: Runyard) -> None:
    spans: list[tuple[float, float]] = []

    async def call() -> None:
        start = time.monotonic()
        await asyncio.sleep(0.1)
        spans.append((start, time.monotonic()))

    @yard.workflow
    async def hit_api(ctx: Context) -> None:
        await ctx.step("call", call)

    async def main() -> None:
        fc = FlowControl(key="per-trigger", parallelism=1)
        handles = [await yard.start("hit_api", flow_control=fc) for _ in range(5)]
        async with running_worker(yard, concurrency=8):
            for h in handles:
                assert (await h.wait(timeout=30)).status is RunStatus.SUCCEEDED
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 0.005, "two runs of a parallelism=1 key overlapped"

    asyncio.run(main())
