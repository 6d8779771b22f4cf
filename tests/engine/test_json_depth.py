"""What a workflow produces nests at most ``rules.JSON_DEPTH_MAX`` levels, as what a
client gives does: a result, an output or a step's result nested deeper fails the run
(or the step) with an error naming the limit, and nothing unservable is stored."""

from __future__ import annotations

import asyncio
from typing import Any

from runyard import Context, Runyard
from runyard.models import RunStatus
from runyard.rules import JSON_DEPTH_MAX
from tests.conftest import running_worker


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_a_result_output_or_step_nested_too_deep_fails_naming_the_limit(yard: Runyard) -> None:
    @yard.workflow
    async def deep_result(ctx: Context, depth: int) -> Any:
        return nested(depth)

    @yard.workflow
    async def deep_output(ctx: Context, depth: int) -> None:
        await ctx.emit(nested(depth))

    @yard.workflow(retries=0)
    async def deep_step(ctx: Context, depth: int) -> Any:
        async def make() -> Any:
            return nested(depth)

        return await ctx.step("make", make, retries=0)

    async def main() -> None:
        async with running_worker(yard):
            for workflow in ("deep_result", "deep_output", "deep_step"):
                ok = await yard.start(workflow, JSON_DEPTH_MAX - 2)
                assert (await ok.wait(timeout=20)).status is RunStatus.SUCCEEDED, workflow
                bad = await yard.start(workflow, JSON_DEPTH_MAX + 50)
                run = await bad.wait(timeout=20)
                assert run.status is RunStatus.FAILED, (workflow, run.status)
                assert run.error is not None and str(JSON_DEPTH_MAX) in str(run.error), run.error
                # What was stored is served back.
                assert (await yard.service.get_run(bad.id)).id == bad.id
                assert await yard.outputs(bad.id) == []

    asyncio.run(main())
