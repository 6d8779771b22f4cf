"""The bulk fill of ``runyard bench --scale`` (``runyard_bench.clone.clone_runs``) writes
what real runs write: its copies read back through the normal API like the real runs
they were cloned from, on both backends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runyard import Runyard
from runyard.rules import check_run_id
from runyard_bench.clone import clone_runs, database_bytes, relation_bytes
from runyard_bench.scale import template_runs
from runyard_bench.workflows import build_yard

DAY = 86400.0


async def _all_ids(y: Runyard, **filters: Any) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await y.list_runs(limit=100, cursor=cursor, **filters)
        ids += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids


async def _shape(y: Runyard, run_id: str) -> dict[str, Any]:
    """What must be the same in a copy: everything but ids and times."""
    run = await y.get_run(run_id)
    items = await y.items(run_id)
    steps = await y.steps(run_id)
    transitions = await y.transitions(run_id)
    assert run.finished_at is not None
    return {
        "run": (run.workflow, run.status, run.result, run.input_count, run.credits),
        "duration": round(run.finished_at - run.created_at, 6),
        "items": [(i.idx, i.state, i.result, i.attempt) for i in items],
        "steps": [(s.position, s.name, s.status) for s in steps],
        "transitions": [(t.from_status, t.to_status) for t in transitions],
    }


def test_cloned_runs_read_like_real_ones(db_url: str) -> None:
    async def main() -> None:
        y = build_yard(db_url)
        try:
            # Templates with steps too, so that every table a run owns is exercised.
            templates = await template_runs(y, 3, ("noop", "three_steps"))
            size0 = await asyncio.to_thread(database_bytes, db_url)
            rel0 = await asyncio.to_thread(relation_bytes, db_url)
            now = time.time()
            oldest, newest = now - 30 * DAY, now - 60
            rep = await asyncio.to_thread(
                clone_runs, db_url, templates, 200, oldest=oldest, newest=newest, batch=70
            )
            assert rep.runs == 200
            assert rep.rows["runs"] == 200
            assert rep.rows["items"] == 200
            assert rep.rows["steps"] == 3 * 67  # copies of the three_steps template (k % 3 == 1)
            assert await asyncio.to_thread(database_bytes, db_url) > size0
            assert await asyncio.to_thread(relation_bytes, db_url) != rel0 or not rel0

            everything = await _all_ids(y)
            assert len(everything) == len(set(everything)) == 203
            noop = await _all_ids(y, workflow="noop", status="SUCCEEDED")
            three = await _all_ids(y, workflow="three_steps", status="SUCCEEDED")
            assert len(noop) == 2 + 133 and len(three) == 1 + 67
            assert await _all_ids(y, status="RUNNING") == []
            recent = await _all_ids(y, workflow="noop", created_after=now - DAY)
            assert 2 <= len(recent) < 20

            want = {t: await _shape(y, t) for t in templates}
            for run_id in await _all_ids(y, order="asc"):
                if run_id in want:
                    continue
                check_run_id(run_id)
                run = await y.get_run(run_id)
                assert oldest - 1 <= run.created_at <= newest + 1
                # Sortable by creation time, like the ids the engine makes.
                assert abs(int(run_id[4:16], 16) - run.created_at * 1000) <= 1, run_id
                shape = await _shape(y, run_id)
                assert shape in want.values(), (run_id, shape)
                steps = await y.steps(run_id)
                assert all(run.created_at <= (s.completed_at or 0) for s in steps)
        finally:
            await y.aclose()

    asyncio.run(main())
