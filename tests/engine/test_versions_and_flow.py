"""Workflow versions keep runs on the code they started with; per-trigger flow control."""

from __future__ import annotations

import asyncio
import itertools
import time

from pydantic import BaseModel

from runyard import Context, FlowControl, InvalidInput, RunStatus, Runyard
from runyard.store import Tx
from tests.conftest import make_yard, running_worker
from tests.waiting import wait_until_async


class Order(BaseModel):
    sku: str
    qty: int


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
            # (The worker's first claim came after both starts: it would have taken v1.)
            assert await started_on_v2.result(timeout=20) == "v2"
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


def _timed_calls(yard: Runyard, name: str) -> list[tuple[float, float]]:
    """Register workflow ``name``, one step of 0.1 s; the (start, end) of each call."""
    spans: list[tuple[float, float]] = []

    async def call() -> None:
        start = time.monotonic()
        await asyncio.sleep(0.1)
        spans.append((start, time.monotonic()))

    async def body(ctx: Context) -> None:
        await ctx.step("call", call)

    body.__name__ = name
    yard.workflow(body)
    return spans


def _assert_one_at_a_time(spans: list[tuple[float, float]]) -> None:
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.005, "two runs of a parallelism=1 key overlapped"


def test_flow_control_given_with_the_trigger(yard: Runyard) -> None:
    spans = _timed_calls(yard, "hit_api")

    async def main() -> None:
        fc = FlowControl(key="per-trigger", parallelism=1)
        handles = [await yard.start("hit_api", flow_control=fc) for _ in range(5)]
        async with running_worker(yard, concurrency=8):
            for h in handles:
                assert (await h.wait(timeout=30)).status is RunStatus.SUCCEEDED
        _assert_one_at_a_time(spans)

    asyncio.run(main())


def test_a_trigger_naming_a_key_without_limits_keeps_its_limits(yard: Runyard) -> None:
    """A trigger that names a flow-control key but gives no limits uses the key as it is:
    the limits stored for it (by an earlier trigger here) stay, and are enforced."""
    spans = _timed_calls(yard, "hit_shared")

    def stored(tx: Tx) -> tuple[object, ...]:
        row = tx.q1("lock_flow_key", {"key": "shared"})
        assert row is not None
        return row["parallelism"], row["rate"], row["period_s"]

    async def main() -> None:
        limited = FlowControl(key="shared", parallelism=1, rate=100, period=2)
        handles = [await yard.start("hit_shared", flow_control=limited)]
        for _ in range(4):
            handles.append(await yard.start("hit_shared", flow_control=FlowControl(key="shared")))
        assert await yard.db.write(stored) == (1, 100, 2.0)
        async with running_worker(yard, concurrency=8):
            for h in handles:
                assert (await h.wait(timeout=30)).status is RunStatus.SUCCEEDED
        assert len(spans) == 5
        _assert_one_at_a_time(spans)

    asyncio.run(main())


def test_starting_by_name_without_the_code_keeps_the_published_options(db_url: str) -> None:
    worker_side, client_side = make_yard(db_url), make_yard(db_url)

    async def handler(info: object) -> None:
        return None

    @worker_side.workflow(
        timeout=120,
        max_recovery_attempts=2,
        priority=7,
        on_failure=handler,
        flow_control=FlowControl(key="published", parallelism=3),
    )
    async def configured(ctx: Context) -> str:
        return "ok"

    async def main() -> None:
        async with running_worker(worker_side):  # publishes the registry
            await wait_until_async(
                lambda: client_side.db.read(client_side.store.get_workflow, "configured"),
                timeout=10,
                what="workflow configured published",
            )
            h = await client_side.start("configured")
            assert await h.result(timeout=20) == "ok"
        row = await client_side.db.read(client_side.store.get_run, h.id)
        assert row.priority == 7
        raw = await client_side.db.read(lambda tx: tx.q1("get_run", {"id": h.id}))
        assert raw is not None
        assert raw["flow_key"] == "published" and raw["timeout_s"] == 120
        assert raw["max_recovery_attempts"] == 2 and bool(raw["has_on_failure"])

    try:
        asyncio.run(main())
    finally:
        worker_side.close()
        client_side.close()


def test_a_process_without_the_code_validates_against_the_published_schema(db_url: str) -> None:
    worker_side, client_side = make_yard(db_url), make_yard(db_url)

    @worker_side.workflow
    async def order(ctx: Context, o: Order) -> int:
        return o.qty

    async def main() -> None:
        async with running_worker(worker_side):
            await wait_until_async(
                lambda: client_side.db.read(client_side.store.get_workflow, "order"),
                timeout=10,
                what="workflow order published",
            )
            try:
                await client_side.start("order", {"sku": "a", "qty": "many"})
            except InvalidInput as exc:
                assert exc.details[0]["field"] == "input.qty"
            else:
                raise AssertionError("an input of the wrong type was accepted")
            multi = await client_side.start("order", inputs=[{"sku": "a", "qty": 2}, {"sku": 5}])
            run = await multi.wait(timeout=20)
            assert run.status is RunStatus.PARTIAL_SUCCEEDED and run.result == [2, None]

    try:
        asyncio.run(main())
    finally:
        worker_side.close()
        client_side.close()
