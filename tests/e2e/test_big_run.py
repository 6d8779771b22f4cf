"""One run of 10,000 inputs served by two worker processes: its items do not queue on the
run's row (a claim writes the run only when it starts it; outcomes lock it once per group,
in the database thread), and the last outcome finds the run's end with one probe instead
of a count of its inputs. It ended CRASHED on PostgreSQL before (lock timeouts on the
run's row, an aborted pipeline, then a connection failing every statement)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runyard import RunStatus
from tests.apps.e2e_support import spawn, wait_registered, wait_terminal
from tests.conftest import WorkerProcess, make_yard, raw_sql

INPUTS = 10_000


#: Deadlocks the database has detected so far (SQLite takes one writer at a time: none).
DEADLOCKS = {
    "postgres": "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    "sqlite": "SELECT 0",
}


def test_a_run_of_10000_inputs_on_two_workers_succeeds_without_a_retry(
    db_url: str, backend: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    deadlocks = DEADLOCKS[backend]
    before = raw_sql(db_url, deadlocks)

    async def main() -> None:
        yard = make_yard(db_url)
        try:
            for _ in range(2):
                spawn(worker_procs, "bulk", db_url, tmp_path, concurrency=16, lease_s=15.0)
            await wait_registered(yard, ["double"])
            handle = await yard.start("double", inputs=list(range(INPUTS)), run_id="big")
            (run,) = (await wait_terminal(yard, [handle.id], timeout=240)).values()
            assert run.status is RunStatus.SUCCEEDED, run.error
            assert run.result == [2 * x for x in range(INPUTS)]
            assert run.recovery_attempts == 0
            # Every item ran once: no attempt failed, none was handed back.
            items = await yard.db.read(lambda tx: yard.store.get_items(tx, "big", limit=INPUTS + 1))
            assert len(items) == INPUTS
            assert {(i.state, i.attempt) for i in items} == {("completed", 1)}
        finally:
            await yard.aclose()

    asyncio.run(main())
    assert all(w.alive() for w in worker_procs)  # nobody died on the way
    assert raw_sql(db_url, deadlocks) == before
