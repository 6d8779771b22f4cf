"""SIGKILL storm: two worker processes are killed at random while 200 five-step runs
execute. Nothing is lost, every run gets the right result, and no step runs again after
its checkpoint committed.

The storm is seeded: set ``RUNYARD_STORM_SEED`` to replay a failing schedule of kills.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from runyard import Run, RunStatus
from runyard.models import StepRecord
from tests.apps.e2e_support import read_ledger, spawn, wait_registered, wait_terminal
from tests.conftest import WorkerProcess, make_yard

RUNS = 200
STORM_S = 9.0
PRODUCE_S = 7.0  # runs are created over this long, from the start of the storm
BATCH = 10
STEPS = ("s1", "s2", "s3", "s4", "s5")


def expected(n: int) -> dict[str, int]:
    """The result of ``five_steps(n)``: tests/apps/storm.py's ``transform`` five times."""
    value = n
    for step in STEPS:
        value = (value * 3 + int(step[1:])) % 1_000_003
    return {"n": n, "value": value}


def test_sigkill_storm_loses_nothing_and_never_reruns_a_checkpointed_step(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    seed = int(os.environ.get("RUNYARD_STORM_SEED") or random.randrange(2**32))
    print(f"SIGKILL storm seed {seed} (replay with RUNYARD_STORM_SEED={seed})")
    rng = random.Random(seed)
    ledger_path = tmp_path / "ledger.txt"

    def new_worker() -> WorkerProcess:
        return spawn(worker_procs, "storm", db_url, tmp_path, concurrency=8, lease_s=2.0)

    async def main() -> tuple[dict[str, int], dict[str, Run], dict[str, list[StepRecord]], int]:
        yard = make_yard(db_url)
        try:
            workers = [new_worker(), new_worker()]
            await wait_registered(yard, ["five_steps"])
            inputs: dict[str, int] = {}

            async def produce() -> None:
                # Runs arrive in batches through most of the storm, so that kills keep
                # landing on work in flight (and on runs being accepted).
                for first in range(0, RUNS, BATCH):
                    batch = range(first, min(RUNS, first + BATCH))
                    handles = await asyncio.gather(*(yard.start("five_steps", n) for n in batch))
                    inputs.update({h.id: n for n, h in zip(batch, handles, strict=True)})
                    await asyncio.sleep(PRODUCE_S * BATCH / RUNS)

            producer = asyncio.create_task(produce())
            kills = 0
            storm_end = time.monotonic() + STORM_S
            while time.monotonic() < storm_end:
                await asyncio.sleep(rng.uniform(0.2, 0.4))
                k = rng.randrange(len(workers))
                workers[k].kill()
                kills += 1
                workers[k] = new_worker()
            await producer
            assert len(inputs) == RUNS

            runs = await wait_terminal(yard, list(inputs), timeout=60)
            steps = {run_id: await yard.steps(run_id) for run_id in inputs}
            return inputs, runs, steps, kills
        finally:
            await yard.aclose()

    started = time.monotonic()
    inputs, runs, steps, kills = asyncio.run(main())
    ledger = read_ledger(ledger_path)
    executions: dict[tuple[str, int, str], int] = {}
    for e in ledger:
        key = (e.fields[0], int(e.fields[1]), e.fields[2])
        executions[key] = executions.get(key, 0) + 1
    reruns = sum(n - 1 for n in executions.values())
    recovered = sum(r.recovery_attempts for r in runs.values())
    print(
        f"{kills} kills, {len(ledger)} step executions for {RUNS * len(STEPS)} steps "
        f"({reruns} re-executions before a checkpoint), {recovered} recoveries, "
        f"{time.monotonic() - started:.1f} s"
    )

    # 1. No step started after its checkpoint committed. A ledger line is written when the
    # step body begins, and ``completed_at`` is taken (same host clock) inside the
    # transaction that writes the checkpoint, after the body returned; an execution that
    # begins after that commit is therefore strictly later. No epsilon is needed: bodies
    # sleep >= 20 ms between their line and the checkpoint.
    completed = {
        (s.run_id, s.item_idx, s.name): s.completed_at for ss in steps.values() for s in ss
    }
    late = []
    for e in ledger:
        run_id, item, step = e.fields[0], int(e.fields[1]), e.fields[2]
        assert run_id in inputs, f"ledger names an unknown run: {e}"
        at = completed.get((run_id, item, step))
        if at is not None and e.at > at:
            late.append(
                f"{run_id} item {item} {step} by pid {e.pid} at {e.at!r}, "
                f"{e.at - at:.6f} s after its checkpoint ({at!r})"
            )
    assert not late, f"{len(late)} step execution(s) after the checkpoint: {late[:5]}"

    # 2. Nothing lost: every run succeeded with the right result.
    bad = {
        rid: (r.status.value, r.error)
        for rid, r in runs.items()
        if r.status is not RunStatus.SUCCEEDED
    }
    assert not bad, f"{len(bad)} run(s) did not succeed, e.g. {list(bad.items())[:3]}"
    wrong = {rid: r.result for rid, r in runs.items() if r.result != expected(inputs[rid])}
    assert not wrong, f"wrong results: {list(wrong.items())[:3]}"

    # 3. Exactly one checkpoint per (run, item, step), and every step ran at least once.
    for run_id, n in inputs.items():
        got = [
            (s.item_idx, s.iteration, s.position, s.name, s.kind, s.status) for s in steps[run_id]
        ]
        assert got == [(0, 1, i + 1, name, "step", "completed") for i, name in enumerate(STEPS)]
        value = n
        for s in steps[run_id]:
            value = (value * 3 + int(s.name[1:])) % 1_000_003
            assert s.result == value, (run_id, s.name, s.result, value)
        for name in STEPS:
            assert executions.get((run_id, 0, name), 0) >= 1, (run_id, name)

    # The storm did interrupt work in flight (otherwise this test proves nothing).
    assert recovered > 0 or reruns > 0, "no kill hit a run in flight"
