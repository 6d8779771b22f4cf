"""Workflows an assistant drives over MCP: a fast one, a slow one telling its progress,
and a no-op (the benchmark's round trip)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from runyard import Context, Runyard

yard = Runyard()


class Greeting(BaseModel):
    name: str
    times: int = 1


class Nap(BaseModel):
    seconds: float
    steps: int = 4


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


@yard.workflow
async def greet(ctx: Context, req: Greeting) -> str:
    """Greet someone by name."""
    return " ".join([f"hello {req.name}"] * req.times)


@yard.workflow
async def nap(ctx: Context, req: Nap) -> dict[str, Any]:
    """Sleep for a while in steps, telling its progress after each."""
    for i in range(req.steps):
        await ctx.step(f"nap-{i}", _pause, req.seconds / req.steps)
        await ctx.progress((i + 1) / req.steps, f"step {i + 1} of {req.steps}")
    return {"slept": req.seconds}


@yard.workflow
async def noop(ctx: Context, value: int) -> int:
    """Answer its input."""
    return value
