"""Issue 18, item 9: a workflow's ``ctx.logger`` lines reach the worker's console (the
process's logging) once each, however often the workflow is replayed: after a sleep,
an event wait and a failed attempt of its body (both backends, a real in-process
worker)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runyard import Context, Runyard
from tests.conftest import running_worker


def test_each_line_reaches_the_console_once_across_replays(
    yard: Runyard, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    @yard.workflow(retries=1)
    async def chatty(ctx: Context, who: str) -> str:
        ctx.logger.info("hello %s", who)
        await ctx.step("one", lambda: 1)
        ctx.logger.info("before the nap")
        await ctx.sleep("nap", 0.2)  # handed back: the next execution replays the above
        ctx.logger.info("after the nap")
        await ctx.wait_for_event("go", f"go-{who}", timeout=0.2)  # times out: a replay
        ctx.logger.info("after the wait")
        got = await ctx.step("flaky", flaky, retries=0)  # fails once: the body runs again
        ctx.logger.info("done: %s", got)
        return who

    caplog.set_level(logging.INFO, logger="runyard.run.chatty")

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("chatty", input="ann")
            assert await h.result(timeout=30) == "ann"
        lines = await yard.logs(h.id)
        stored = [x.message for x in lines]
        # Replayed lines are not repeated. "after the wait" comes after the last thing
        # recorded when the step failed: the body's second attempt runs that code anew
        # (it is no replay), so it is logged again, by another execution.
        expected = [
            "hello ann",
            "before the nap",
            "after the nap",
            "after the wait",
            "after the wait",
            "done: ok",
        ]
        assert stored == expected
        assert [x.attempt for x in lines] == [1, 1, 2, 3, 4, 4]
        shown = [r.getMessage() for r in caplog.records if r.name == "runyard.run.chatty"]
        assert shown == expected
        assert len(tries) == 2  # the body did run again

    asyncio.run(main())
