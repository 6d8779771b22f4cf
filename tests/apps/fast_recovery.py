"""A workflow whose step holds its worker (sleeps) on its first execution only, so a
test can SIGKILL the worker running it and time another worker's resumption."""

from __future__ import annotations

import os
import time

from runyard import Context, Runyard
from tests.apps import ledger

yard = Runyard()

HOLD_S = 60.0


def hold(run_id: str) -> int:
    """Records its start; sleeps HOLD_S on the run's first execution (a marker file next
    to the ledger says it happened)."""
    ledger.record("hold", run_id)
    marker = os.environ[ledger.LEDGER_ENV] + f".{run_id}"
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        time.sleep(HOLD_S)
    return os.getpid()


@yard.workflow
async def held(ctx: Context) -> int:
    pid: int = await ctx.step("hold", hold, ctx.run_id)
    return pid
