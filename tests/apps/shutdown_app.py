"""Workflows for the graceful-shutdown tests: a step whose length the test controls."""

from __future__ import annotations

import asyncio
import os

from runyard import Context, Runyard

yard = Runyard()


async def _work(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()


@yard.workflow
async def long_step(ctx: Context, seconds: float) -> dict[str, int]:
    first = await ctx.step("first", _work, 0.0)
    # A marker file shortens the step for the worker that picks the run up again.
    short = os.path.exists(os.environ.get("SHUTDOWN_MARKER", "/nonexistent"))
    second = await ctx.step("second", _work, 0.1 if short else seconds)
    return {"first": first, "second": second}
