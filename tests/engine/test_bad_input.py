"""Bad input gets a clear error naming the field, and leaves nothing half-written."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from runyard import (
    Context,
    FlowControl,
    InvalidInput,
    RunFailed,
    RunStatus,
    Runyard,
    SyncContext,
    WorkflowNotFound,
)
from tests.conftest import make_yard, running_worker
from tests.waiting import wait_until_async


class Order(BaseModel):
    sku: str
    qty: int


def _nothing_written(yard: Runyard) -> None:
    page = asyncio.run(yard.list_runs(limit=100))
    assert page.items == []


def test_wrong_types_name_each_field(yard: Runyard) -> None:
    @yard.workflow
    async def order(ctx: Context, o: Order) -> int:
        return o.qty

    with pytest.raises(InvalidInput) as info:
        asyncio.run(yard.start("order", {"sku": 5, "qty": "many"}))
    fields = {d["field"] for d in info.value.details}
    assert fields == {"input.sku", "input.qty"}
    assert "input.qty" in info.value.message
    with pytest.raises(InvalidInput):
        asyncio.run(yard.start("order", None))
    _nothing_written(yard)


def test_unknown_workflow(yard: Runyard) -> None:
    with pytest.raises(WorkflowNotFound) as info:
        asyncio.run(yard.start("no_such_workflow", {}))
    assert "no_such_workflow" in info.value.message
    _nothing_written(yard)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"text": "a\x00b"}, "input.text"),
        ({"n": math.nan}, "input"),
        ({"obj": object()}, "input"),
    ],
)
def test_inputs_that_cannot_be_stored(yard: Runyard, value: Any, where: str) -> None:
    @yard.workflow
    async def anything(ctx: Context, x: Any) -> Any:
        return x

    with pytest.raises(InvalidInput) as info:
        asyncio.run(yard.start("anything", value))
    assert where in info.value.message
    _nothing_written(yard)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"run_id": "has space"}, "run_id"),
        ({"run_id": "nul\x00"}, "run_id"),
        ({"run_id": ""}, "run_id"),
        ({"mode": "sideways"}, "mode"),
        ({"delay": -1}, "delay"),
        ({"timeout": -5}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"max_results": 0}, "max_results"),
        ({"max_results": 2**40}, "max_results"),
        ({"priority": 2**40}, "priority"),
        ({"retries": 10**6}, "retries"),
        ({"sync_mode": "sometimes"}, "sync_mode"),
        ({"inputs": []}, "inputs"),
        # NaN and the infinities pass `< 0`: refused as not finite, naming the field.
        ({"delay": math.nan}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"delay": 10**400}, "delay"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": -math.inf}, "timeout"),
        ({"not_before": math.nan}, "not_before"),
        ({"not_before": math.inf}, "not_before"),
        ({"not_before": -math.inf}, "not_before"),
        # Times a date cannot show (a read of the run would fail): refused up front.
        ({"not_before": 1e12}, "not_before"),
        ({"delay": 1e12}, "delay"),
        ({"delay": 366 * 86400 + 1}, "delay"),
        ({"task_id": "no-such-task"}, "task_id"),
    ],
)
def test_bad_options(yard: Runyard, kwargs: dict[str, Any], field: str) -> None:
    @yard.workflow
    async def anything(ctx: Context, x: Any = None) -> Any:
        return x

    with pytest.raises(InvalidInput) as info:
        asyncio.run(yard.start("anything", **kwargs))
    assert info.value.details[0]["field"] == field
    _nothing_written(yard)


def test_durations_that_are_not_finite_numbers(yard: Runyard) -> None:
    for period in (math.nan, math.inf, 0):
        with pytest.raises(InvalidInput) as info:
            FlowControl("k", rate=1, period=period)
        assert info.value.details[0]["field"] == "flow_control.period"
    for timeout in (math.nan, math.inf):
        with pytest.raises(InvalidInput) as info:

            @yard.workflow(timeout=timeout)
            async def bounded(ctx: Context) -> None:
                return None

        assert info.value.details[0]["field"] == "timeout"
    assert "bounded" not in yard.workflows


def test_a_task_id_names_a_task_of_the_same_workflow(yard: Runyard) -> None:
    @yard.workflow
    async def anything(ctx: Context, x: Any = None) -> Any:
        return x

    yard.migrate()
    yard.db.write_sync(yard.store.create_task_txn, "t-other", None, "other", None, {})
    yard.db.write_sync(yard.store.create_task_txn, "t-mine", None, "anything", None, {})
    with pytest.raises(InvalidInput) as info:
        asyncio.run(yard.start("anything", 1, task_id="t-other", run_id="r-other"))
    assert info.value.details == [{"field": "task_id", "error": "a task of another workflow"}]
    assert "other" in info.value.message
    _nothing_written(yard)
    handle = asyncio.run(yard.start("anything", 1, task_id="t-mine"))
    assert asyncio.run(yard.get_run(handle.id)).task_id == "t-mine"


def test_bad_list_arguments(yard: Runyard) -> None:
    with pytest.raises(InvalidInput):
        asyncio.run(yard.list_runs(limit=0))
    with pytest.raises(InvalidInput):
        asyncio.run(yard.list_runs(limit=101))
    with pytest.raises(InvalidInput):
        asyncio.run(yard.list_runs(cursor="garbage"))
    for cursor in ("nan|r1", "inf|r1", "1.5", "1.5|"):
        with pytest.raises(InvalidInput) as info:
            asyncio.run(yard.list_runs(cursor=cursor))
        assert info.value.details == [{"field": "cursor", "error": "malformed"}]
    with pytest.raises(InvalidInput):
        asyncio.run(yard.list_runs(status="DONE"))


def test_results_that_are_not_json_fail_clearly(yard: Runyard) -> None:
    @yard.workflow
    async def bad_result(ctx: Context) -> Any:
        return {"when": object()}

    @yard.workflow
    async def bad_step(ctx: Context) -> Any:
        return await ctx.step("nul", lambda: "x\x00y")

    async def main() -> None:
        async with running_worker(yard):
            run = await (await yard.start("bad_result")).wait(timeout=20)
            assert run.status is RunStatus.FAILED
            assert "the workflow's result is not JSON" in run.error["message"]
            run2 = await (await yard.start("bad_step")).wait(timeout=20)
            assert run2.status is RunStatus.FAILED
            assert "NUL" in run2.error["message"] and "'nul'" in run2.error["message"]
            steps = await yard.steps(run2.id)
            assert len(steps) == 1 and steps[0].status == "failed" and steps[0].attempts == 1

    asyncio.run(main())


class Even(BaseModel):
    """Its published JSON Schema accepts any integer; only its validator refuses an odd
    one, so a process without the code accepts what the worker then discards."""

    n: int

    @field_validator("n")
    @classmethod
    def even(cls, n: int) -> int:
        if n % 2:
            raise ValueError("must be even")
        return n


def test_a_run_whose_inputs_the_worker_discards_ends_invalid(db_url: str) -> None:
    worker_side = make_yard(db_url)
    # Without the code, and polling only every 30 s: a wait that returns at once was woken
    # by the announcement of the run's end.
    client_side = make_yard(db_url, poll_s=30.0)

    @worker_side.workflow
    async def halve(ctx: Context, e: Even) -> int:
        return e.n // 2

    async def ended(inputs: list[Any]) -> RunFailed:
        h = await client_side.start("halve", inputs=inputs)
        t0 = time.monotonic()
        with pytest.raises(RunFailed) as info:
            await h.result(timeout=20)
        assert time.monotonic() - t0 < 5, "the wait was not woken by the run's end"
        return info.value

    async def main() -> None:
        async with running_worker(worker_side):
            await wait_until_async(
                lambda: client_side.db.read(client_side.store.get_workflow, "halve"),
                timeout=10,
                what="workflow halve published",
            )
            every = await ended([{"n": 1}, {"n": 3}, {"n": 5}])
            assert every.status == "INVALID"
            assert every.details["code"] == "invalid_input"
            assert every.details["discarded"] == 3
            assert "all 3 inputs were discarded" in every.message
            run_id = every.message.split()[1]
            items = await client_side.items(run_id)
            assert [i.state for i in items] == ["discarded"] * 3
            assert "input.n" in items[0].error["message"]

            single = await ended([{"n": 7}])
            assert single.status == "INVALID" and single.details["code"] == "invalid_input"
            assert "input.n: Value error, must be even" in single.message

            mixed = await client_side.start("halve", inputs=[{"n": 4}, {"n": 5}])
            run = await mixed.wait(timeout=10)
            assert run.status is RunStatus.PARTIAL_SUCCEEDED and run.result == [2, None]
            assert (run.error["failed"], run.error["discarded"]) == (0, 1)

    try:
        asyncio.run(main())
    finally:
        worker_side.close()
        client_side.close()


async def _step_call(ctx: Context, text: str) -> None:
    await ctx.step(text, lambda: 1)


async def _sleep_call(ctx: Context, text: str) -> None:
    await ctx.sleep(text, 0)


async def _wait_call(ctx: Context, text: str) -> None:
    await ctx.wait_for_event(text, "some-event", timeout=0)


async def _event_id_call(ctx: Context, text: str) -> None:
    await ctx.wait_for_event("wait", text, timeout=0)


async def _emit_call(ctx: Context, text: str) -> None:
    await ctx.emit({"ok": True}, key=text)


async def _charge_call(ctx: Context, text: str) -> None:
    await ctx.charge(text, 1)


async def _progress_call(ctx: Context, text: str) -> None:
    await ctx.progress(0.5, text)


async def _map_call(ctx: Context, text: str) -> None:
    await ctx.map(text, lambda x: x, [1, 2])


async def _patched_call(ctx: Context, text: str) -> None:
    ctx.patched(text)


BAD_TEXTS = {"nul": ("a\x00b", "a NUL character"), "surrogate": ("a\ud800b", "a lone surrogate")}


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (_step_call, "ctx.step: name"),
        (_sleep_call, "ctx.sleep: name"),
        (_wait_call, "ctx.wait_for_event: name"),
        (_event_id_call, "ctx.wait_for_event: event_id"),
        (_emit_call, "ctx.emit: key"),
        (_charge_call, "ctx.charge: action"),
        (_progress_call, "ctx.progress: message"),
        (_map_call, "ctx.map: name"),
        (_patched_call, "ctx.patched: change"),
    ],
)
def test_text_the_store_cannot_hold_is_refused_where_the_workflow_passes_it(
    yard: Runyard, call: Any, named: str
) -> None:
    """A NUL character (which PostgreSQL cannot store) or a lone surrogate in a name the
    workflow hands the engine fails the run at once, without a recovery, with an error
    naming the argument; the step before it stays recorded, nothing of the refused call."""

    @yard.workflow(retries=2)
    async def careless(ctx: Context, which: str) -> None:
        await ctx.step("before", lambda: "fine")
        await call(ctx, BAD_TEXTS[which][0])

    async def main() -> None:
        async with running_worker(yard):
            for which, (_, reason) in BAD_TEXTS.items():
                h = await yard.start("careless", which)
                run = await h.wait(timeout=10)
                assert run.status is RunStatus.FAILED, run.error
                assert run.error["code"] == "invalid_input"
                assert run.error["message"].startswith(f"{named} ")
                assert reason in run.error["message"]
                assert run.recovery_attempts == 0
                steps = await yard.steps(h.id)
                assert [(s.name, s.status) for s in steps] == [("before", "completed")]
                assert await yard.attempts(h.id) == []  # refused, not retried
                assert await yard.outputs(h.id) == [] and run.credits == 0

    asyncio.run(main())


def test_a_sync_workflow_gets_the_same_error(yard: Runyard) -> None:
    @yard.workflow
    def careless(ctx: SyncContext) -> None:
        ctx.step("nul\x00here", lambda: 1)

    async def main() -> None:
        async with running_worker(yard):
            run = await (await yard.start("careless")).wait(timeout=10)
            assert run.status is RunStatus.FAILED and run.error["code"] == "invalid_input"
            assert run.error["message"] == (
                "ctx.step: name 'nul\\x00here' contains a NUL character, which cannot be stored"
            )
            assert run.error["details"] == [
                {
                    "field": "name",
                    "error": "'nul\\x00here' contains a NUL character, which cannot be stored",
                }
            ]

    asyncio.run(main())


def test_a_step_result_with_a_lone_surrogate_fails_the_run_clearly(yard: Runyard) -> None:
    @yard.workflow
    async def garbled(ctx: Context) -> Any:
        return await ctx.step("decode", lambda: {"text": "half a pair: \ud800"})

    async def main() -> None:
        async with running_worker(yard):
            run = await (await yard.start("garbled")).wait(timeout=10)
            assert run.status is RunStatus.FAILED and run.recovery_attempts == 0
            assert run.error["code"] == "step_failed"
            message = run.error["message"]
            assert "the result of step 'decode'.text contains a lone surrogate" in message

    asyncio.run(main())
