"""An event notified by another OS process wakes a run waiting for it in a worker
process, and its data reaches the run; an event notified before the wait begins is
found through the lookback window."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from runyard import RunStatus, Runyard
from tests.apps.e2e_support import spawn, wait_registered
from tests.conftest import ROOT, WorkerProcess, make_yard
from tests.waiting import wait_until_async

NOTIFY = """
import json, sys
from runyard import Runyard
yard = Runyard(sys.argv[1])
try:
    woken = yard.sync.notify(sys.argv[2], json.loads(sys.argv[3]))
finally:
    yard.close()
print(json.dumps(woken))
"""


def notify_from_another_process(db_url: str, event_id: str, data: Any) -> list[str]:
    """``yard.sync.notify`` in a fresh Python process; the run ids it woke."""
    out = subprocess.run(
        [sys.executable, "-c", NOTIFY, db_url, event_id, json.dumps(data)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_event_notified_from_another_process_reaches_the_waiting_run(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    data = {"order": 42, "items": ["a", "b"], "note": "héllo"}

    async def main() -> None:
        yard = make_yard(db_url)
        try:
            spawn(worker_procs, "waits", db_url, tmp_path, concurrency=4, lease_s=2.0)
            await wait_registered(yard, ["event_waiter"])

            # 1. The run is already waiting when the event arrives.
            waiting = await yard.start("event_waiter", "order-paid:42")
            await wait_until_async(
                lambda: _has_waiter(yard, "order-paid:42", waiting.id),
                timeout=20,
                interval=0.1,
                what="the run waiting for order-paid:42",
            )
            woken = await asyncio.to_thread(
                notify_from_another_process, db_url, "order-paid:42", data
            )
            assert woken == [waiting.id]
            run = await yard.wait(waiting.id, timeout=20)
            assert run.status is RunStatus.SUCCEEDED, (run.status, run.error)
            assert run.result == {"event_id": "order-paid:42", "data": data, "timed_out": False}

            # 2. The event arrives first; a run that starts waiting later still gets it.
            assert (
                await asyncio.to_thread(
                    notify_from_another_process, db_url, "order-paid:43", [1, 2, 3]
                )
                == []
            )
            late = await yard.start("event_waiter", "order-paid:43")
            run = await yard.wait(late.id, timeout=20)
            assert run.status is RunStatus.SUCCEEDED, (run.status, run.error)
            assert run.result == {
                "event_id": "order-paid:43",
                "data": [1, 2, 3],
                "timed_out": False,
            }
        finally:
            await yard.aclose()

    asyncio.run(main())


async def _has_waiter(yard: Runyard, event_id: str, run_id: str) -> bool:
    return any(w.run_id == run_id for w in await yard.waiters(event_id))
