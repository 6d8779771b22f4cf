"""Bad input gets a clear error naming the field, and leaves nothing half-written."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from pydantic import BaseModel

from runyard import Context, InvalidInput, RunStatus, Runyard, WorkflowNotFound
from tests.conftest import running_worker


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


def test_bad_list_arguments(yard: Runyard) -> None:
    with pytest.raises(InvalidInput):
        asyncio.run(yard.list_runs(limit=0))
    with pytest.raises(InvalidInput):
        asyncio.run(yard.list_runs(limit=101))
    with pytest.raises(InvalidInput):
        asyncio.run(yard.list_runs(cursor="garbage"))
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
