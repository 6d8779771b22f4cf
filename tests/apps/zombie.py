"""A workflow whose second step blocks for a while on its first execution only, so a
test can freeze (SIGSTOP) the worker running it until its lease is gone."""

from __future__ import annotations

import os
import time
from typing import Any

from runyard import Context, Runyard
from runyard.store.tx import Later
from tests.apps import ledger

yard = Runyard()

MARKER_ENV = "RUNYARD_TEST_MARKER"
BLOCK_S = 4.0


def first(run_id: str) -> int:
    ledger.record("one", run_id)
    return os.getpid()


def second(run_id: str) -> int:
    """Blocks BLOCK_S seconds when the marker file does not exist yet (it creates it);
    the pid of the process that executed it."""
    ledger.record("two-start", run_id)
    marker = os.environ[MARKER_ENV]
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        time.sleep(BLOCK_S)
    ledger.record("two-end", run_id)
    return os.getpid()


async def second_blocking_the_loop(run_id: str) -> int:
    """``second`` as a coroutine that blocks the worker's event loop (as CPU-bound code
    or a synchronous call in an ``async def`` step does): heartbeats stop with it, and
    when it returns the worker goes straight on to write the outcome."""
    return second(run_id)


@yard.workflow
async def zombie_thread(ctx: Context) -> dict[str, int]:
    """Step two runs in the worker's thread pool, where nothing can interrupt it."""
    one = await ctx.step("one", first, ctx.run_id)
    two = await ctx.step("two", second, ctx.run_id)
    return {"one": one, "pid": two}


@yard.workflow
async def zombie_loop(ctx: Context) -> dict[str, int]:
    one = await ctx.step("one", first, ctx.run_id)
    two = await ctx.step("two", second_blocking_the_loop, ctx.run_id)
    return {"one": one, "pid": two}


def _spy_on_outcome_writes() -> None:
    """Record in the ledger each checkpoint or outcome write of this worker and whether
    the store refused it (None: fenced out), so the test can tell that the woken worker
    did try to write, not only that nothing changed."""
    store = yard.store
    for name in ("checkpoint_txn", "complete_item_txn"):
        write = getattr(store, name)

        def spy(tx: Any, f: Any, *args: Any, _write: Any = write, _name: str = name) -> Any:
            def record(status: Any) -> Any:
                ledger.record("write", _name, f.run_id, "refused" if status is None else status)
                return status

            answer = _write(tx, f, *args)
            if isinstance(answer, Later):  # read once the commit is on its way
                return Later(lambda: record(answer.result()))
            return record(answer)

        setattr(store, name, spy)


_spy_on_outcome_writes()
