"""Workflows of the run-object tests (credits by action, max_results, transitions)."""

from __future__ import annotations

from typing import Any

from runyard import Context, Runyard

yard = Runyard()


@yard.workflow
async def billed(ctx: Context, order: dict[str, Any]) -> dict[str, Any]:
    """Charge two actions, one of them twice."""
    await ctx.charge("search", 1.5)
    await ctx.charge("enrich", 2)
    await ctx.charge("search", 0.5)
    return {"order": order}


@yard.workflow
async def bounded(ctx: Context, n: int) -> dict[str, int]:
    """Emit ``n`` records, counting what ``ctx.emit`` says it stored and refused."""
    stored = refused = 0
    for i in range(n):
        if await ctx.emit({"i": i}):
            stored += 1
        else:
            refused += 1
    return {"stored": stored, "refused": refused}


@yard.workflow
async def held(ctx: Context, event_id: str) -> Any:
    """Wait for an event (a run that stays RUNNING while the test looks at it)."""
    got = await ctx.wait_for_event("gate", event_id, timeout=120)
    return got.data
