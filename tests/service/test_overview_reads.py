"""The overview's reads (service/overview.py) on both backends: runs not ended by status
and per workflow with their cap, runs ended and failed per bucket, live workers with the
items they hold, credits by workflow and day."""

from __future__ import annotations

import asyncio
import time

import pytest

from runyard import Context, InvalidInput, Runyard
from runyard.service import OVERVIEW_COUNT_CAP
from tests.conftest import running_worker
from tests.waiting import wait_until_async


def _define(yard: Runyard, hold: asyncio.Event) -> None:
    @yard.workflow
    async def billed(ctx: Context, n: int) -> int:
        await ctx.charge("lookup", n)
        return n

    @yard.workflow(retries=0)
    async def broken(ctx: Context, n: int) -> int:
        raise ValueError(f"broken {n}")

    @yard.workflow
    async def holder(ctx: Context, n: int) -> int:
        async def wait() -> int:
            await hold.wait()
            return n

        result: int = await ctx.step("wait", wait)
        return result


def test_counts_activity_workers_and_usage(yard: Runyard) -> None:
    async def main() -> None:
        hold = asyncio.Event()
        _define(yard, hold)
        async with running_worker(yard) as worker:
            ok = [await yard.start("billed", n) for n in (1, 2, 3)]
            bad = [await yard.start("broken", n) for n in (1, 2)]
            for h in ok + bad:
                await h.wait(timeout=20)
            later = [await yard.start("billed", 9, delay=3600) for _ in range(3)]
            held = await yard.start("holder", 7)

            async def holding() -> bool:
                loads, _ = await yard.worker_loads(30.0)
                return any(h.run_id == held.id for w in loads for h in w.held)

            await wait_until_async(holding, timeout=20, what="the worker holds the holder run")

            # Runs not ended, by status and per published workflow; capped counts read
            # one past the cap.
            counts = await yard.open_run_counts()
            assert counts == {"SCHEDULED": 3, "QUEUED": 0, "RUNNING": 1, "PAUSED": 0}
            assert await yard.open_run_counts(cap=2) == {
                "SCHEDULED": 3,
                "QUEUED": 0,
                "RUNNING": 1,
                "PAUSED": 0,
            }
            assert (await yard.open_run_counts(cap=1))["SCHEDULED"] == 2
            queues = await yard.workflow_queues()
            assert queues["billed"] == {"SCHEDULED": 3, "QUEUED": 0, "RUNNING": 0, "PAUSED": 0}
            assert queues["holder"]["RUNNING"] == 1
            assert queues["broken"] == {"SCHEDULED": 0, "QUEUED": 0, "RUNNING": 0, "PAUSED": 0}

            # The live worker and the item it holds, with its run's workflow.
            loads, orphaned = await yard.worker_loads(30.0)
            assert [w.worker.id for w in loads] == [worker.id]
            [item] = loads[0].held
            assert (item.run_id, item.item_idx, item.workflow) == (held.id, 0, "holder")
            assert item.lease_expires_at is not None and orphaned == []

            # Ended per minute over the last hour and per hour over the last day: the
            # same five runs, two of them failed.
            hour = await yard.run_activity(3600.0, 60.0)
            day = await yard.run_activity(86400.0, 3600.0)
            for activity, buckets in ((hour, 60), (day, 24)):
                assert len(activity.starts) == buckets == len(activity.ended)
                assert sum(activity.ended) == 5 and sum(activity.failed) == 2
                assert activity.by_status == {"SUCCEEDED": 3, "FAILED": 2}
                assert activity.starts == sorted(activity.starts)
                assert (
                    activity.starts[-1] <= time.time() < activity.starts[-1] + activity.bucket_s + 5
                )
            # Again (settled buckets kept, the newest read anew): the same figures.
            assert await yard.run_activity(3600.0, 60.0) == hour

            hold.set()
            assert await held.result(timeout=20) == 7
            for h in later:
                await yard.cancel(h.id)
            again = await yard.run_activity(3600.0, 60.0)
            assert sum(again.ended) == 9
            assert again.by_status == {"SUCCEEDED": 4, "FAILED": 2, "CANCELED": 3}
            # An hour on, those runs have left the per-minute window (and the settled
            # buckets of the last hour are dropped as the window moves).
            moved = await yard.run_activity(3600.0, 60.0, now=time.time() + 7200)
            assert sum(moved.ended) == 0 and moved.by_status == {}

            # Credits per workflow and day, today last.
            usage = await yard.usage_series(7)
            today = time.strftime("%Y-%m-%d", time.gmtime())
            assert len(usage.days) == 7 and usage.days[-1] == today
            assert usage.credits == {"billed": [0.0] * 6 + [6.0]} and usage.total == 6.0

            overview = await yard.overview()
            assert overview.cap == OVERVIEW_COUNT_CAP
            assert overview.open["SCHEDULED"] == 0 and overview.open["RUNNING"] == 0
            assert sum(overview.last_day.ended) == 9
            assert [w.worker.id for w in overview.workers] == [worker.id]
            assert overview.usage is not None and overview.usage.total == 6.0

            # Within max_age_s the same read is given again (one read for every open
            # overview of a process); without it, a fresh one.
            shared = await yard.overview(max_age_s=60.0)
            assert shared is overview
            await yard.start("billed", 1, delay=3600)
            assert await yard.overview(max_age_s=60.0) is overview
            fresh = await yard.overview()
            assert fresh is not overview and fresh.open["SCHEDULED"] == 1

    asyncio.run(main())


def test_bad_windows_name_the_field(yard: Runyard) -> None:
    async def main() -> None:
        for kwargs, field in (
            ({"window_s": 3600.0, "bucket_s": 0.0}, "bucket_s"),
            ({"window_s": 10.0, "bucket_s": 60.0}, "window_s"),
            ({"window_s": 86400.0 * 30, "bucket_s": 1.0}, "window_s"),
        ):
            with pytest.raises(InvalidInput) as caught:
                await yard.run_activity(**kwargs)
            error = "not positive" if field == "bucket_s" else "out of range"
            assert caught.value.details == [{"field": field, "error": error}]
        with pytest.raises(InvalidInput) as caught:
            await yard.usage_series(0)
        assert caught.value.details == [{"field": "days", "error": "out of range"}]

    asyncio.run(main())
