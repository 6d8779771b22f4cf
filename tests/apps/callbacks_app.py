"""Workflows whose runs report to a callback (tests/callbacks)."""

from __future__ import annotations

import asyncio
from typing import Any

from runyard import Context, Runyard

yard = Runyard()


@yard.workflow
async def emitter(ctx: Context, spec: dict[str, Any]) -> dict[str, Any]:
    """Emits ``count`` outputs, ``pause`` seconds apart, then returns; charges credits."""
    count, pause = int(spec.get("count", 0)), float(spec.get("pause", 0))
    for i in range(count):
        await ctx.emit({"n": i, "of": spec.get("tag")})
        if pause:
            await asyncio.sleep(pause)
    await ctx.charge("emit", count)
    return {"emitted": count, "tag": spec.get("tag")}
