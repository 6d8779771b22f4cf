"""Workflows for the graceful-shutdown tests: a step whose length the test controls."""

from __future__ import annotations

import asyncio
import os

from runyard import Context, Runyard
from tests.apps import ledger

yard = Runyard()


async def _work(name: str, seconds: float) -> int:
    if ledger.LEDGER_ENV in os.environ:  # (the test learns when a step is under way)
        ledger.record("work", name, seconds)
    await asyncio.sleep(seconds)
    return os.getpid()


@yard.workflow
async def long_step(ctx: Context, seconds: float) -> dict[str, int]:
    first = await ctx.step("first", _work, "first", 0.0)
    # A marker file shortens the step for the worker that picks the run up again.
    short = os.path.exists(os.environ.get("SHUTDOWN_MARKER", "/nonexistent"))
    second = await ctx.step("second", _work, "second", 0.1 if short else seconds)
    return {"first": first, "second": second}
