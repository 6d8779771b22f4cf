"""A durable sleep holds no worker slot: one worker with concurrency 1 gets 20 runs that
each sleep 2 s through in far less than the 40 s that holding the slot would take."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from runyard import RunStatus
from tests.apps.e2e_support import spawn, wait_registered, wait_terminal
from tests.conftest import WorkerProcess, make_yard

RUNS = 20
NAP_S = 2.0  # tests/apps/waits.py


def test_sleeping_runs_hold_no_worker_slot(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    async def main() -> None:
        yard = make_yard(db_url)
        try:
            spawn(worker_procs, "waits", db_url, tmp_path, concurrency=1, lease_s=2.0)
            await wait_registered(yard, ["napper"])
            started = time.monotonic()
            handles = await asyncio.gather(*(yard.start("napper", i) for i in range(RUNS)))
            runs = await wait_terminal(yard, [h.id for h in handles], timeout=40)
            elapsed = time.monotonic() - started
            steps = {h.id: await yard.steps(h.id) for h in handles}
        finally:
            await yard.aclose()

        print(f"{RUNS} runs sleeping {NAP_S} s each on one slot: {elapsed:.1f} s")
        for i, h in enumerate(handles):
            run = runs[h.id]
            assert run.status is RunStatus.SUCCEEDED, (run.status, run.error)
            assert run.result == i
            assert [(s.name, s.kind, s.status) for s in steps[h.id]] == [
                ("nap", "sleep", "completed")
            ]
            # The sleep really happened (it was not skipped to free the slot).
            assert run.finished_at is not None and run.started_at is not None
            assert run.finished_at - run.started_at >= NAP_S - 0.01
        assert elapsed < 20, f"{RUNS} naps of {NAP_S} s took {elapsed:.1f} s on one slot"

    asyncio.run(main())
