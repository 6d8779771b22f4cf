"""Issue 18, item 3: a waiter's ``since`` (``GET /v1/events/{id}/waiters``, ``runyard
waiters``, ``Runyard.waiters``) is when its wait began, not that minus the lookback; the
lookback still lets an earlier event count (both backends, a real in-process worker)."""

from __future__ import annotations

import asyncio
import time

from runyard import Context, Runyard
from tests.conftest import running_worker
from tests.waiting import wait_until_async


def test_a_waiter_shows_when_its_wait_began(yard: Runyard) -> None:
    began: list[float] = []

    @yard.workflow
    async def waits(ctx: Context) -> str:
        if not ctx.replaying:
            began.append(time.time())
        got = await ctx.wait_for_event("approval", "go-1", lookback=3600)
        return str(got.data)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("waits")
            waiters = await wait_until_async(
                lambda: yard.waiters("go-1"), timeout=10, what="the run waiting on go-1"
            )
            after = time.time()
            run = await h.get()
            [w] = waiters
            assert w.run_id == h.id
            # Not an hour before: from the moment the workflow reached the wait.
            assert run.created_at <= w.since, (run.created_at, w.since)
            assert began[0] <= w.since <= after
            assert await yard.notify("go-1", "yes") == [h.id]
            assert await h.result(timeout=20) == "yes"

            # The lookback is kept: an event notified before the wait still counts.
            await yard.notify("go-2", "early")

            @yard.workflow
            async def late(ctx: Context) -> str:
                got = await ctx.wait_for_event("approval", "go-2", lookback=3600)
                return str(got.data)

        async with running_worker(yard):
            h2 = await yard.start("late")
            assert await h2.result(timeout=20) == "early"

    asyncio.run(main())
