"""Workflows of the tracing tests (tests/telemetry): served by real worker processes
(``tests.telemetry.app:yard``) and registered on in-process Runyards by :func:`define`."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from runyard import Context, RetryPolicy, Runyard

#: Failed attempts of ``flaky`` so far, per run (in this process).
_failures: dict[str, int] = {}


def _one() -> str:
    return "one"


async def _flaky(run_id: str) -> str:
    """Fails its first attempt of each run, then succeeds."""
    if _failures.get(run_id, 0) < 1:
        _failures[run_id] = _failures.get(run_id, 0) + 1
        raise RuntimeError("first attempt fails")
    return "flaky"


async def traced(ctx: Context, spec: dict[str, Any]) -> dict[str, Any]:
    """Two steps, the second failing once and retried in place."""
    one = await ctx.step("one", _one)
    flaky = await ctx.step(
        "flaky", _flaky, ctx.run_id, retries=RetryPolicy(max_attempts=3, backoff_s=0.01)
    )
    return {"steps": [one, flaky], "tag": spec.get("tag")}


async def _hold(marker: str) -> str:
    """Creates ``marker`` and holds (the test kills the worker meanwhile); once the marker
    exists, returns at once (the attempt of the worker that resumed the run)."""
    if os.path.exists(marker):
        return "resumed"
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    await asyncio.sleep(120)
    return "held"


async def resumable(ctx: Context, spec: dict[str, Any]) -> str:
    """A step, then one that holds until its worker is killed; resumed elsewhere."""
    await ctx.step("before", _one)
    return str(await ctx.step("hold", _hold, spec["marker"]))


async def fragile(ctx: Context, spec: dict[str, Any]) -> str:
    """As ``resumable``, but its first recovery gives up: the run ends CRASHED."""
    await ctx.step("before", _one)
    return str(await ctx.step("hold", _hold, spec["marker"]))


def _loaded() -> list[str]:
    return sorted(m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry."))


async def modules(ctx: Context, spec: dict[str, Any]) -> list[str]:
    """The ``opentelemetry`` modules loaded in the worker process that ran it."""
    return list(await ctx.step("loaded", _loaded))


def define(yard: Runyard) -> Runyard:
    for fn in (traced, resumable, modules):
        yard.workflow(fn)
    yard.workflow(max_recovery_attempts=0)(fragile)
    return yard


yard = define(Runyard())
