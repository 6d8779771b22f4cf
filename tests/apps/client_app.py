"""Workflows the SDK and CLI tests drive through a real server and worker processes."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field

from runyard import Context, NonRetryableError, Runyard, SyncContext

yard = Runyard()


class Order(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(ge=1)


async def _pause(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@yard.workflow
async def emit_many(ctx: Context, n: int) -> int:
    """Emit ``n`` outputs numbered 0..n-1."""
    for i in range(n):
        await ctx.emit({"n": i})
    return n


@yard.workflow
async def listed(ctx: Context, i: int) -> int:
    """A no-op, started many times by the pagination test only."""
    return i


@yard.workflow
async def nap(ctx: Context, seconds: float) -> dict[str, Any]:
    """Two steps with progress in between (a run that takes a while)."""
    await ctx.progress(0.1, "starting")
    await ctx.step("first", _pause, seconds / 2)
    await ctx.progress(0.5, "half way")
    await ctx.emit({"half": True})
    await ctx.step("second", _pause, seconds / 2)
    await ctx.progress(1.0, "done")
    return {"slept": seconds}


@yard.workflow
async def order(ctx: Context, o: Order) -> dict[str, Any]:
    """Typed input: a bad one is refused with 422 naming the field."""
    await ctx.charge("order", o.qty)
    return {"sku": o.sku, "qty": o.qty}


@yard.workflow(retries=0)
async def boom(ctx: Context, message: str) -> None:
    """Fails at once."""
    await ctx.step("explode", _explode, message)


def _explode(message: str) -> None:
    raise NonRetryableError(message)


@yard.workflow
def chatty(ctx: SyncContext, n: int) -> int:
    """Logs ``n`` lines from a thread (a plain ``def``), the last just before it returns."""
    for i in range(n):
        ctx.logger.info("line %d of %d", i, n)
    ctx.logger.warning("done")
    return n


@yard.workflow
async def waiter(ctx: Context, event_id: str) -> Any:
    """Waits for ``event_id`` and returns its data."""
    got = await ctx.wait_for_event("event", event_id, timeout=120)
    return got.data
