"""A five-step workflow for the SIGKILL storm: every step execution is in the ledger."""

from __future__ import annotations

import asyncio
import random
import time

from runyard import Context, Runyard
from tests.apps import ledger

yard = Runyard()

STEPS = ("s1", "s2", "s3", "s4", "s5")
# Long enough that a run is in flight most of the storm (a batch of ten runs arrives every
# 350 ms): a kill at a random moment then nearly always lands on work in flight. With
# 2-20 ms the workers idled ~80 % of the time, and a storm of 30 kills hit nothing in
# flight about one time in forty.
PAUSE_S = (0.02, 0.06)


def transform(step: str, value: int) -> int:
    """What step ``step`` makes of ``value`` (the test computes the expected result)."""
    return (value * 3 + int(step[1:])) % 1_000_003


async def async_step(run_id: str, item: int, step: str, value: int) -> int:
    ledger.record(run_id, item, step)
    await asyncio.sleep(random.uniform(*PAUSE_S))
    return transform(step, value)


def sync_step(run_id: str, item: int, step: str, value: int) -> int:
    ledger.record(run_id, item, step)
    time.sleep(random.uniform(*PAUSE_S))
    return transform(step, value)


# A run may be interrupted many times during the storm; what is under test is that no
# step runs again after its checkpoint, not the crash limit (tests/e2e/test_poison.py).
@yard.workflow(max_recovery_attempts=1000)
async def five_steps(ctx: Context, n: int) -> dict[str, int]:
    value = n
    for i, step in enumerate(STEPS):
        # Odd steps are coroutines, even ones run in the worker's thread pool.
        fn = async_step if i % 2 == 0 else sync_step
        value = await ctx.step(step, fn, ctx.run_id, ctx.item, step, value)
    return {"n": n, "value": value}
