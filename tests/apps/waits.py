"""Durable waits: a sleep that must not hold a worker slot, and a wait for an event
notified from another process."""

from __future__ import annotations

import asyncio
from typing import Any

from runyard import Context, Runyard

yard = Runyard()


@yard.workflow
async def napper(ctx: Context, i: int) -> int:
    await ctx.sleep("nap", 2)
    return i


@yard.workflow
async def event_waiter(ctx: Context, event_id: str) -> dict[str, Any]:
    got = await ctx.wait_for_event("order", event_id, timeout=60)
    return {"event_id": got.event_id, "data": got.data, "timed_out": got.timed_out}


@yard.workflow
async def staggered(ctx: Context, delay: float) -> float:
    """Each input of a run finishes ``delay`` seconds after it starts (a plain sleep)."""
    await asyncio.sleep(delay)
    return delay
