"""Workflows under flow control; each step body writes ``tag start|end key`` lines to
the ledger so a test can observe concurrency and start rates from outside the engine."""

from __future__ import annotations

import asyncio
import time

from runyard import Context, FlowControl, Runyard
from tests.apps import ledger

yard = Runyard()


async def timed(tag: str, key: str, seconds: float) -> str:
    ledger.record(tag, "start", key)
    await asyncio.sleep(seconds)
    ledger.record(tag, "end", key)
    return key


def timed_sync(tag: str, key: str, seconds: float) -> str:
    ledger.record(tag, "start", key)
    time.sleep(seconds)
    ledger.record(tag, "end", key)
    return key


@yard.workflow(flow_control=FlowControl(key="e2e-parallel", parallelism=2))
async def capped(ctx: Context, i: int) -> str:
    return str(await ctx.step("work", timed, "par", f"{ctx.run_id}", 0.2))


@yard.workflow(flow_control=FlowControl(key="e2e-rate", rate=5, period=1.0))
async def rated(ctx: Context, i: int) -> str:
    return str(await ctx.step("work", timed, "rate", f"{ctx.run_id}", 0.01))


@yard.workflow
async def step_capped(ctx: Context, i: int) -> str:
    before = await ctx.step("before", lambda: i)
    # Alternate coroutine and thread-pool bodies under the same one-at-a-time key.
    fn = timed if i % 2 else timed_sync
    key = await ctx.step(
        "upstream",
        fn,
        "step",
        f"{ctx.run_id}",
        0.1,
        flow_control=FlowControl(key="e2e-step", parallelism=1),
    )
    return f"{key}:{before}"
