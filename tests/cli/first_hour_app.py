"""Workflows for the CLI's first-hour tests: a run asleep, a run waiting for an event
that logs before and after, a typed input with a nested model, custom data read back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from runyard import Context, Runyard

yard = Runyard()


class Item(BaseModel):
    sku: str = Field(min_length=3)
    qty: int = Field(ge=2)


class Approval(BaseModel):
    item: Item
    approver: str = Field(min_length=1)


@yard.workflow
async def approve_order(ctx: Context, req: Approval) -> dict[str, Any]:
    """First by name, and its input nests a model (a ``$ref`` in its schema)."""
    return {"sku": req.item.sku, "qty": req.item.qty, "by": req.approver}


@yard.workflow
async def dozer(ctx: Context, seconds: float) -> float:
    """Sleeps durably (no worker held) for ``seconds``."""
    await ctx.sleep("nap", seconds)
    return seconds


@yard.workflow
async def order_flow(ctx: Context, item: Item) -> dict[str, Any]:
    """Gives back the input and its custom data."""
    return {"sku": item.sku, "custom_data": ctx.custom_data}


@yard.workflow
async def slow_talker(ctx: Context, event_id: str) -> Any:
    """Logs a line, waits for ``event_id``, logs another and returns the event's data."""
    ctx.logger.info("before the event")
    got = await ctx.wait_for_event("go", event_id, timeout=300)
    ctx.logger.info("after the event: %s", got.data)
    return got.data
