"""The in-process run record (``RunHandle.get``): credits by action, the sole input,
``run_time``, and ``max_results`` enforced with the emit's answer replayed: both backends."""

from __future__ import annotations

import asyncio
from typing import Any

from runyard import Context, Runyard
from tests.conftest import running_worker


def test_run_record_carries_breakdown_input_run_time_and_limit(yard: Runyard) -> None:
    attempts: list[int] = []

    @yard.workflow
    async def capped(ctx: Context, n: int) -> dict[str, Any]:
        await ctx.charge("fetch", 1)
        await ctx.charge("fetch", 2)
        await ctx.charge("store", 0.25)
        answers = [await ctx.emit({"i": i}) for i in range(n)]
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            # Fail once after the emits: the retry replays them, and must get the same
            # answers without storing or refusing anything again.
            raise RuntimeError("retry me")
        return {"answers": answers}

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("capped", 5, max_results=3, retries=2)
            result = await h.result(timeout=30)
            assert result == {"answers": [True, True, True, False, False]}
            assert attempts == [1, 2]
            run = await h.get()
            assert run.credits == 3.25
            assert run.credits_by_action == {"fetch": 3.0, "store": 0.25}
            assert run.input == 5
            assert run.truncated is True and run.output_count == 3
            assert len(await yard.outputs(h.id)) == 3
            assert run.started_at is not None and run.finished_at is not None
            assert run.run_time() == run.finished_at - run.started_at

            several = await yard.start("capped", inputs=[1, 1], max_results=5)
            await several.wait(timeout=30)
            record = await several.get()
            assert record.input is None and record.truncated is False

    asyncio.run(main())
