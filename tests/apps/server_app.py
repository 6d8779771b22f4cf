"""Workflows the HTTP server tests run in real worker processes."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import BaseModel, Field

from runyard import Context, FlowControl, NonRetryableError, Runyard

yard = Runyard()


class Greeting(BaseModel):
    name: str = Field(min_length=1)
    times: int = Field(default=1, ge=1, le=10)


@yard.workflow
async def greet(ctx: Context, who: Greeting) -> dict[str, Any]:
    """Say hello (a step, a charge and one output per time)."""
    text = await ctx.step("compose", _compose, who.name)
    await ctx.charge("greeting", who.times)
    for i in range(who.times):
        await ctx.emit({"i": i, "text": text})
    return {"greeting": text, "times": who.times}


async def _compose(name: str) -> str:
    return f"hello {name}"


@yard.workflow
async def emitter(ctx: Context, n: int) -> int:
    """Emit ``n`` outputs, reporting progress."""
    for i in range(n):
        await ctx.emit({"i": i})
    await ctx.progress(1.0, "emitted")
    return n


@yard.workflow
async def sleeper(ctx: Context, seconds: float) -> float:
    """Hold a worker for ``seconds`` inside one step (cancellable at its await)."""
    await ctx.step("sleep", asyncio.sleep, seconds)
    return seconds


@yard.workflow
async def waiter(ctx: Context, event_id: str) -> Any:
    """Wait (durably) for an event; its data is the result."""
    got = await ctx.wait_for_event("event", event_id, timeout=120)
    return got.data


@yard.workflow
async def gated(ctx: Context, flag: str) -> str:
    """Fails until the file ``flag`` exists (resume it after creating the file)."""
    await ctx.step("check", _check_flag, flag)
    return "passed"


def _check_flag(flag: str) -> None:
    if not os.path.exists(flag):
        raise NonRetryableError(f"{flag} does not exist yet")


@yard.workflow
async def counter(ctx: Context, _unused: Any = None) -> int:
    """An incremental run: each iteration counts one more and emits it once."""
    n = int(ctx.sync.state or 0) + 1
    await ctx.emit({"n": n}, key=f"n{n}")
    await ctx.sync.save(n)
    return n


@yard.workflow(flow_control=FlowControl(key="server-tests-one-at-a-time", parallelism=1))
async def exclusive(ctx: Context, seconds: float) -> float:
    """At most one at a time across every worker."""
    await ctx.step("hold", asyncio.sleep, seconds)
    return seconds
