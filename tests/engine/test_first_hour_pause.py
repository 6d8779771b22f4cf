"""Issue 18, item 2: a run paused while it waits (for an event, or in a sleep) goes
back to its wait when resumed, and leaves it when the event comes or the sleep ends,
not before (both backends, a real in-process worker)."""

from __future__ import annotations

import asyncio
import time

from runyard import Context, RunStatus, Runyard
from tests.conftest import running_worker
from tests.waiting import NotYet, stays_true_async, wait_until_async


def test_a_run_paused_while_waiting_for_an_event_waits_again_when_resumed(
    yard: Runyard,
) -> None:
    @yard.workflow
    async def waits(ctx: Context) -> str:
        got = await ctx.wait_for_event("approval", "approve-1", timeout=60)
        return str(got.data)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("waits")

            async def waiting() -> object:
                run = await h.get()
                ok = run.status is RunStatus.RUNNING and run.waiting_for == "event:approve-1"
                return ok or NotYet((run.status, run.waiting_for))

            await wait_until_async(waiting, timeout=10, what="the run waiting for its event")
            assert (await yard.pause(h.id)).status is RunStatus.PAUSED
            assert (await yard.resume(h.id)).status is RunStatus.RUNNING
            run = await h.get()
            assert (run.status, run.waiting_for) == (RunStatus.RUNNING, "event:approve-1")
            # It stays in its wait (no worker runs it meanwhile) until the event comes.
            await stays_true_async(waiting, for_s=1.0, what="the resumed run still waiting")
            assert await yard.notify("approve-1", "yes") == [h.id]
            assert await h.result(timeout=20) == "yes"

    asyncio.run(main())


def test_a_run_paused_while_sleeping_sleeps_to_the_end_when_resumed(yard: Runyard) -> None:
    woke: list[float] = []

    @yard.workflow
    async def naps(ctx: Context) -> str:
        await ctx.sleep("nap", 3.0)
        woke.append(time.time())
        return "rested"

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("naps")

            async def sleeping() -> object:
                run = await h.get()
                ok = run.status is RunStatus.RUNNING and run.waiting_for == "sleep:nap"
                return ok or NotYet((run.status, run.waiting_for))

            await wait_until_async(sleeping, timeout=10, what="the run in its sleep")
            steps = await yard.steps(h.id)
            wake_at = steps[0].result["wake_at"]
            assert (await yard.pause(h.id)).status is RunStatus.PAUSED
            await yard.resume(h.id)
            run = await h.get()
            assert (run.status, run.waiting_for) == (RunStatus.RUNNING, "sleep:nap")
            assert await h.result(timeout=20) == "rested"
        assert len(woke) == 1 and woke[0] >= wake_at

    asyncio.run(main())


def test_an_event_notified_during_the_pause_wakes_the_run_once_resumed(yard: Runyard) -> None:
    @yard.workflow
    async def held(ctx: Context) -> str:
        got = await ctx.wait_for_event("approval", "approve-2", timeout=60)
        return str(got.data)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("held")

            async def waiting() -> object:
                run = await h.get()
                return run.waiting_for == "event:approve-2" or NotYet(run.waiting_for)

            await wait_until_async(waiting, timeout=10, what="the run waiting for its event")
            await yard.pause(h.id)
            assert await yard.notify("approve-2", "while paused") == [h.id]

            async def still_paused() -> object:
                run = await h.get()
                return run.status is RunStatus.PAUSED or NotYet(run.status)

            await stays_true_async(still_paused, for_s=0.5, what="the run paused")
            await yard.resume(h.id)
            assert await h.result(timeout=20) == "while paused"

    asyncio.run(main())
