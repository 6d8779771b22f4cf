"""A workflow whose step holds its worker on its first execution only (a marker file
next to the ledger says it happened), so a test can SIGKILL that worker while an
assistant waits, and see another worker finish the run."""

from __future__ import annotations

import os
import time

from runyard import Context, Runyard
from tests.apps import ledger

yard = Runyard()

HOLD_S = 60.0


def hold(run_id: str) -> int:
    marker = os.environ[ledger.LEDGER_ENV] + f".{run_id}"
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        time.sleep(HOLD_S)
    return os.getpid()


@yard.workflow
async def held(ctx: Context, label: str) -> dict[str, object]:
    """Hold the worker on the first execution, then answer."""
    pid: int = await ctx.step("hold", hold, ctx.run_id)
    return {"label": label, "pid": pid}
