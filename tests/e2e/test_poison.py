"""A poison run (its step SIGKILLs its own worker) ends CRASHED after its
``max_recovery_attempts`` instead of killing workers forever, while ordinary runs served
by the same (constantly restarted) workers all succeed; once the cause is gone, resume
finishes it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from runyard import RunStatus
from tests.apps.e2e_support import read_ledger, spawn, wait_registered, wait_terminal
from tests.conftest import WorkerProcess, make_yard

MAX_RECOVERY_ATTEMPTS = 2  # tests/apps/poison.py
NORMAL_RUNS = 20


def test_poison_run_crashes_others_succeed_and_resume_finishes_it(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    env = {"RUNYARD_TEST_MARKER": str(marker)}

    def new_worker() -> WorkerProcess:
        return spawn(worker_procs, "poison", db_url, tmp_path, concurrency=4, lease_s=2.0, env=env)

    async def main() -> None:
        yard = make_yard(db_url)
        workers = [new_worker(), new_worker()]
        restarts = 0
        stopping = asyncio.Event()

        async def supervise() -> None:
            nonlocal restarts
            while not stopping.is_set():
                for k, w in enumerate(workers):
                    if not w.alive():
                        workers[k] = new_worker()
                        restarts += 1
                await asyncio.sleep(0.1)

        supervisor = asyncio.create_task(supervise())
        try:
            await wait_registered(yard, ["poison", "normal"])
            started = time.monotonic()
            bad = await yard.start("poison")
            normals: dict[str, int] = {}
            for i in range(NORMAL_RUNS):  # spread over the first deaths of workers
                normals[(await yard.start("normal", i)).id] = i
                await asyncio.sleep(0.25)

            crashed = await yard.wait(bad.id, timeout=45)
            print(
                f"poison run {crashed.status.value} after {time.monotonic() - started:.1f} s, "
                f"{restarts} worker restarts"
            )
            runs = await wait_terminal(yard, list(normals), timeout=30)

            # The cause is fixed: resume continues from the last checkpoint and succeeds.
            marker.unlink()
            await yard.resume(bad.id)
            resumed = await yard.wait(bad.id, timeout=30)
            steps = await yard.steps(bad.id)
            transitions = [t.to_status for t in await yard.transitions(bad.id)]
        finally:
            stopping.set()
            await supervisor
            await yard.aclose()

        assert crashed.status is RunStatus.CRASHED, (crashed.status, crashed.error)
        assert isinstance(crashed.error, dict) and crashed.error.get("code") == "crashed"

        failed = {
            rid: (r.status.value, r.error)
            for rid, r in runs.items()
            if r.status is not RunStatus.SUCCEEDED
        }
        assert not failed, f"ordinary runs did not all succeed: {list(failed.items())[:3]}"
        for rid, r in runs.items():
            i = normals[rid]
            assert r.result == i * i + (i + 1) * (i + 1)

        assert resumed.status is RunStatus.SUCCEEDED, (resumed.status, resumed.error)
        assert resumed.result == "survived"
        assert [(s.name, s.status, s.result) for s in steps] == [
            ("deadly", "completed", "survived")
        ]
        assert transitions.count("CRASHED") == 1 and transitions[-1] == "SUCCEEDED", transitions

        # Each execution of the poison step killed one worker process and cost the run one
        # recovery. SPEC: CRASHED once "its worker died more times than
        # max_recovery_attempts", so after exactly max_recovery_attempts + 1 deaths.
        deaths = [
            e
            for e in read_ledger(tmp_path / "ledger.txt")
            if e.fields[0] == "poison" and e.at < (crashed.finished_at or 0)
        ]
        assert len({e.pid for e in deaths}) == len(deaths)  # one death per worker process
        assert restarts >= len(deaths)
        assert len(deaths) == MAX_RECOVERY_ATTEMPTS + 1, (
            f"the poison run killed {len(deaths)} workers before it was marked CRASHED "
            f"(the workflow has max_recovery_attempts={MAX_RECOVERY_ATTEMPTS}); "
            f"error: {crashed.error}"
        )

    asyncio.run(main())
