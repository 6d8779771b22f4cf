"""A poison run that kills its worker (SIGKILL) while a marker file exists, next to an
ordinary workflow whose runs must get through regardless."""

from __future__ import annotations

import os
import signal
import time

from runyard import Context, Runyard
from tests.apps import ledger

yard = Runyard()

MARKER_ENV = "RUNYARD_TEST_MARKER"


def deadly(run_id: str) -> str:
    ledger.record("poison", run_id)
    if os.path.exists(os.environ[MARKER_ENV]):
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@yard.workflow(max_recovery_attempts=2)
async def poison(ctx: Context) -> str:
    return str(await ctx.step("deadly", deadly, ctx.run_id))


def work(run_id: str, i: int) -> int:
    ledger.record("normal", run_id, i)
    time.sleep(0.2)
    return i * i


@yard.workflow
async def normal(ctx: Context, i: int) -> int:
    first = await ctx.step("a", work, ctx.run_id, i)
    second = await ctx.step("b", work, ctx.run_id, i + 1)
    return int(first + second)
