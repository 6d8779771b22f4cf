"""Workflows the MCP Tasks extension tests run in a real worker process."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from runyard import Context, Runyard

yard = Runyard()


class Who(BaseModel):
    name: str


class Hold(BaseModel):
    seconds: float


@yard.workflow
async def quick(ctx: Context, who: Who) -> dict[str, Any]:
    """Greet at once."""
    return {"hello": who.name}


@yard.workflow
async def paced(ctx: Context, hold: Hold) -> dict[str, Any]:
    """Report half way, then hold a worker for ``seconds`` (cancellable at its await)."""
    await ctx.progress(0.5, "half way")
    await ctx.step("hold", asyncio.sleep, hold.seconds)
    return {"slept": hold.seconds}
