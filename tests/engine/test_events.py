"""Events: stored first, seen within the lookback, timeouts, first of several."""

from __future__ import annotations

import asyncio
import time

import pytest

from runyard import Context, InvalidInput, RunStatus, Runyard, SyncContext
from tests.conftest import running_worker
from tests.waiting import wait_until_async


def _register(yard: Runyard, gate: asyncio.Event | None = None) -> None:
    @yard.workflow
    async def approval(ctx: Context, timeout: float) -> dict[str, object]:
        if gate is not None:
            await ctx.step("prepare", gate.wait)
        ev = await ctx.wait_for_event("approve", f"approve:{ctx.run_id}", timeout=timeout)
        return {"data": ev.data, "timed_out": ev.timed_out, "event_id": ev.event_id}


async def _waiting(yard: Runyard, run_id: str) -> bool:
    run = await yard.get_run(run_id)
    return (run.waiting_for or "").startswith("event:")


def test_notify_before_the_wait_within_lookback(yard: Runyard) -> None:
    _register(yard)

    async def main() -> None:
        await yard.notify("approve:early", {"ok": "before"})
        h = await yard.start("approval", 30, run_id="early")
        async with running_worker(yard):
            assert (await h.result(timeout=20))["data"] == {"ok": "before"}

    asyncio.run(main())


def test_notify_during_the_run_before_it_waits(yard: Runyard) -> None:
    gate = asyncio.Event()
    _register(yard, gate)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("approval", 30, run_id="during")
            await wait_until_async(lambda: _running(yard, h.id), timeout=10, what="run RUNNING")
            assert await yard.notify("approve:during", "mid") == []
            gate.set()
            assert (await h.result(timeout=20))["data"] == "mid"

    asyncio.run(main())


async def _running(yard: Runyard, run_id: str) -> bool:
    return (await yard.get_run(run_id)).status is RunStatus.RUNNING


def test_notify_after_the_wait_began_wakes_the_run(yard: Runyard) -> None:
    _register(yard)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("approval", 30, run_id="after")
            await wait_until_async(
                lambda: _waiting(yard, h.id), timeout=10, what="the run waiting for its event"
            )
            waiters = await yard.waiters("approve:after")
            assert [w.run_id for w in waiters] == ["after"]
            assert await yard.notify("approve:after", [1, 2]) == ["after"]
            result = await h.result(timeout=20)
            assert result == {"data": [1, 2], "timed_out": False, "event_id": "approve:after"}
            assert await yard.waiters("approve:after") == []

    asyncio.run(main())


def test_wait_times_out(yard: Runyard) -> None:
    _register(yard)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("approval", 0.5)
            assert await h.result(timeout=20) == {"data": None, "timed_out": True, "event_id": None}

    asyncio.run(main())


@pytest.mark.parametrize("how", ["async", "sync"])
def test_the_runs_timeout_ends_a_longer_event_wait(yard: Runyard, how: str) -> None:
    """A run with timeout=1 waiting for an event with timeout=60 ends FAILED with the
    run-timeout error at about 1 s; the wait is not answered "timed out" to the workflow,
    and the run waits for the event no more."""
    after_wait: list[object] = []

    @yard.workflow(timeout=1)
    async def impatient(ctx: Context) -> None:
        ev = await ctx.wait_for_event("approve", f"approve:{ctx.run_id}", timeout=60)
        after_wait.append(ev)

    @yard.workflow(timeout=1)
    def impatient_sync(ctx: SyncContext) -> None:
        ev = ctx.wait_for_event("approve", f"approve:{ctx.run_id}", timeout=60)
        after_wait.append(ev)

    async def main() -> None:
        async with running_worker(yard):
            t0 = time.monotonic()
            h = await yard.start("impatient" if how == "async" else "impatient_sync")
            run = await h.wait(timeout=30)
            elapsed = time.monotonic() - t0
        assert run.status is RunStatus.FAILED, run.error
        assert run.error["code"] == "timeout", run.error
        assert elapsed < 10, f"the run ended after {elapsed:.1f} s"
        assert after_wait == []
        assert await yard.waiters(f"approve:{h.id}") == []
        assert await yard.notify(f"approve:{h.id}", "too late") == []

    asyncio.run(main())


def test_the_runs_timeout_ends_a_longer_sleep(yard: Runyard) -> None:
    @yard.workflow(timeout=1)
    async def sleepy(ctx: Context) -> None:
        await ctx.sleep("nap", 60)

    async def main() -> None:
        async with running_worker(yard):
            t0 = time.monotonic()
            h = await yard.start("sleepy")
            run = await h.wait(timeout=30)
            elapsed = time.monotonic() - t0
        assert run.status is RunStatus.FAILED and run.error["code"] == "timeout", run.error
        assert elapsed < 10, f"the run ended after {elapsed:.1f} s"

    asyncio.run(main())


def test_an_event_wait_shorter_than_the_runs_timeout_still_times_out(yard: Runyard) -> None:
    @yard.workflow(timeout=30)
    async def patient(ctx: Context) -> bool:
        ev = await ctx.wait_for_event("approve", f"approve:{ctx.run_id}", timeout=0.5)
        return ev.timed_out

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("patient")
            assert await h.result(timeout=20) is True

    asyncio.run(main())


def test_events_outside_the_lookback_are_not_seen(db_url: str) -> None:
    from tests.conftest import make_yard

    yard = make_yard(db_url, event_lookback_s=0.2)
    _register(yard)

    async def main() -> None:
        await yard.notify("approve:stale", "old news")
        await asyncio.sleep(0.5)
        h = await yard.start("approval", 0.8, run_id="stale")
        async with running_worker(yard):
            assert (await h.result(timeout=20))["timed_out"] is True

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_first_of_several_events(yard: Runyard) -> None:
    @yard.workflow
    async def either(ctx: Context) -> str | None:
        ev = await ctx.wait_for_event("pick", event_ids=["left", "right"], timeout=30)
        return ev.event_id

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("either")
            await wait_until_async(
                lambda: _waiting(yard, h.id), timeout=10, what="the run waiting for its event"
            )
            assert await yard.notify("right", None) == [h.id]
            assert await h.result(timeout=20) == "right"
            assert await yard.waiters("left") == []

    asyncio.run(main())


def test_bad_event_ids_are_refused(yard: Runyard) -> None:
    async def main() -> None:
        for bad in ("", "x" * 301, "a\x00b", "line\nbreak"):
            try:
                await yard.notify(bad, 1)
            except InvalidInput as exc:
                assert exc.details[0]["field"] == "event_id"
            else:
                raise AssertionError(f"{bad!r} accepted")

    asyncio.run(main())
