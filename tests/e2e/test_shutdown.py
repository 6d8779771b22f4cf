"""SIGTERM: a worker finishes what it can within its deadline and hands back the rest,
without counting a crash."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from runyard import RunStatus, Runyard, WorkflowNotFound
from tests.apps.e2e_support import read_ledger
from tests.apps.ledger import LEDGER_ENV
from tests.conftest import WorkerProcess, make_yard
from tests.waiting import wait_until_async

APP = "tests.apps.shutdown_app:yard"


async def _start_when_registered(yard: Runyard, seconds: float) -> str:
    async def started() -> str:
        return (await yard.start("long_step", seconds)).id

    return await wait_until_async(
        started,
        timeout=10,
        ignoring=(WorkflowNotFound,),
        what="long_step started (once the worker has registered it)",
    )


def test_sigterm_lets_the_step_finish(
    db_url: str, worker_procs: list[WorkerProcess], tmp_path: Path
) -> None:
    yard = make_yard(db_url)
    w = WorkerProcess(APP, db_url, shutdown_timeout_s=10, log=tmp_path / "w.log").start()
    worker_procs.append(w)

    async def main() -> None:
        run_id = await _start_when_registered(yard, 1.5)
        await wait_until_async(
            lambda: _at_step(yard, run_id, "first"), timeout=20, what="step first recorded"
        )
        w.signal(signal.SIGTERM)
        run = await yard.wait(run_id, 20)
        assert run.status is RunStatus.SUCCEEDED
        assert run.result["second"] == w.pid
        assert run.recovery_attempts == 0

    try:
        asyncio.run(main())
        assert w.proc is not None and w.proc.wait(15) == 0
    finally:
        yard.close()


def test_sigterm_hands_back_what_does_not_finish(
    db_url: str, worker_procs: list[WorkerProcess], tmp_path: Path
) -> None:
    yard = make_yard(db_url)
    marker, ledger = tmp_path / "short", tmp_path / "ledger.txt"
    env = {"SHUTDOWN_MARKER": str(marker), LEDGER_ENV: str(ledger)}
    a = WorkerProcess(APP, db_url, shutdown_timeout_s=0.5, env=env, log=tmp_path / "a.log")
    worker_procs.append(a.start())

    def second_under_way_in_a() -> bool:
        return any(
            e.fields[:2] == ("work", "second") and e.pid == a.pid for e in read_ledger(ledger)
        )

    async def main() -> None:
        run_id = await _start_when_registered(yard, 60)
        await wait_until_async(
            second_under_way_in_a, timeout=20, what='step "second" running in worker A'
        )
        a.signal(signal.SIGTERM)
        assert a.proc is not None
        await asyncio.to_thread(a.proc.wait, 15)
        items = await yard.items(run_id)
        assert items[0].state == "processing"  # handed back, not lost, not failed
        marker.write_text("1")
        b = WorkerProcess(APP, db_url, env=env, log=tmp_path / "b.log").start()
        worker_procs.append(b)
        run = await yard.wait(run_id, 30)
        assert run.status is RunStatus.SUCCEEDED
        assert run.result == {"first": a.pid, "second": b.pid}
        assert run.recovery_attempts == 0  # a graceful hand-back is not a crash
        assert [s.name for s in await yard.steps(run_id)] == ["first", "second"]

    try:
        asyncio.run(main())
    finally:
        yard.close()


async def _at_step(yard: Runyard, run_id: str, name: str) -> bool:
    steps = await yard.steps(run_id)
    return any(s.name == name for s in steps)
