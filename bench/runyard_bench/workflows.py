"""The workflows ``runyard bench`` measures, and the yards its worker processes serve
(``runyard worker runyard_bench.workflows:yard``, ``...:http_yard``)."""

from __future__ import annotations

import asyncio

from runyard import Context, Runyard


async def _step_noop(x: int) -> int:
    return x


async def noop(ctx: Context, i: int) -> int:
    """No step at all: trigger, claim, complete."""
    return 1


async def three_steps(ctx: Context, i: int) -> int:
    """Three checkpointed no-op steps (like the peers' ``wf3``)."""
    await ctx.step("s1", _step_noop, 1)
    await ctx.step("s2", _step_noop, 2)
    await ctx.step("s3", _step_noop, 3)
    return 1


async def k_steps(ctx: Context, k: int) -> int:
    """``k`` checkpointed no-op steps (``k`` = 0 is a no-op run of the same shape)."""
    for j in range(k):
        await ctx.step(f"s{j}", _step_noop, j)
    return k


async def sleeper(ctx: Context, i: int) -> int:
    """Sleeps durably for an hour: a run that stays RUNNING, its item owned by nobody
    (the scale figures' sleeping runs)."""
    await ctx.sleep("nap", 3600)
    return 1


async def _sleep_ms(ms: int) -> int:
    await asyncio.sleep(ms / 1000.0)
    return ms


async def sleep_step(ctx: Context, ms: int) -> int:
    """One checkpointed step that sleeps ``ms`` milliseconds (what the long-poll of the
    HTTP figures waits on)."""
    result: int = await ctx.step("sleep", _sleep_ms, ms)
    return result


def build_yard(database_url: str | None = None) -> Runyard:
    """A Runyard serving the benchmark workflows."""
    y = Runyard(database_url)
    y.workflow(name="noop")(noop)
    y.workflow(name="three_steps")(three_steps)
    y.workflow(name="k_steps")(k_steps)
    y.workflow(name="sleeper")(sleeper)
    return y


def build_http_yard(database_url: str | None = None) -> Runyard:
    """:func:`build_yard`, and ``sleep_step``."""
    y = build_yard(database_url)
    y.workflow(name="sleep_step")(sleep_step)
    return y


#: What the worker processes of the engine figures serve.
yard = build_yard()
#: What the worker processes of the HTTP figures serve.
http_yard = build_http_yard()

#: ``MODULE:ATTRIBUTE`` of each, for ``runyard worker``.
YARD_TARGET = f"{__name__}:yard"
HTTP_YARD_TARGET = f"{__name__}:http_yard"

__all__ = [
    "HTTP_YARD_TARGET",
    "YARD_TARGET",
    "build_http_yard",
    "build_yard",
    "http_yard",
    "k_steps",
    "noop",
    "sleep_step",
    "sleeper",
    "three_steps",
    "yard",
]
