"""Fires batched into one transaction per batch, on both backends: several schedulers
(each its own Runyard, connections and templates) racing on one batch of due schedules
start one run per fire and leave none behind; a schedule's run is made again when its spec
changes; cancel_other against a fire whose scheduler died before writing its run skips
that fire, so no sweep starts it later."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runyard import Context, Runyard
from runyard.models import RunStatus
from runyard.service import ScheduleSpec
from runyard.service.scheduler import Scheduler
from runyard.service.schedules import fire_run_id
from tests.conftest import make_yard, raw_sql

MANY = 450


def _define(yard: Runyard) -> None:
    @yard.workflow
    async def tick(ctx: Context, tag: Any = None) -> Any:
        return tag


def _rows(yard: Runyard, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return raw_sql(yard.core.settings.database_url, sql, params)


def test_schedulers_racing_on_one_batch_start_each_fire_once(db_url: str) -> None:
    """450 schedules due at one moment, three schedulers of 100 a batch at once: each
    schedule fires once, with one run under its fire's id, its fire recorded started."""
    yards = [make_yard(db_url) for _ in range(3)]
    for y in yards:
        _define(y)
    first = yards[0]

    async def main() -> None:
        for i in range(MANY):
            await first.create_schedule(
                ScheduleSpec(cron="0 0 1 1 *", workflow="tick", input=i, overlap="allow_all"),
                schedule_id=f"race{i:03d}",
            )
        at = float(int(time.time()) - 2)  # (due: every scheduler may take it)
        _rows(first, "UPDATE schedules SET next_fire_at = %s, due_at = %s", (at, at))
        schedulers = [Scheduler(y, batch=100) for y in yards]
        await asyncio.gather(*(s.tick() for s in schedulers))
        started = sum(s.started for s in schedulers)
        assert started == MANY, [s.started for s in schedulers]
        runs = _rows(
            first, "SELECT id, schedule_id, status FROM runs WHERE schedule_id IS NOT NULL"
        )
        assert len(runs) == MANY
        assert {r[0] for r in runs} == {fire_run_id(f"race{i:03d}", at) for i in range(MANY)}
        assert {r[2] for r in runs} == {RunStatus.QUEUED.value}
        fires = _rows(first, "SELECT schedule_id, fire_at, state, run_id FROM schedule_fires")
        assert len(fires) == MANY
        assert {(f[2], f[3] == fire_run_id(f[0], f[1])) for f in fires} == {("started", True)}
        counted = _rows(first, "SELECT sum(fired), min(next_fire_at) FROM schedules")
        assert counted[0][0] == MANY and counted[0][1] > at
        again = [await s.tick() for s in schedulers]  # (nothing left: nothing more)
        assert sum(s.started for s in schedulers) == MANY and all(w is not None for w in again)

    try:
        asyncio.run(main())
    finally:
        for y in yards:
            y.close()


def test_a_changed_spec_gets_its_run_made_again(yard: Runyard) -> None:
    """The run a schedule's fires start follows an update of its input from the next
    fire, though the scheduler keeps the run it prepared before."""
    _define(yard)

    async def main() -> None:
        s, _ = await yard.create_schedule(
            ScheduleSpec(cron="0 0 1 1 *", workflow="tick", input="a", overlap="allow_all")
        )
        scheduler = Scheduler(yard)
        base = int(time.time()) - 10  # (two distinct fire times, however long a tick takes)
        for n, tag in enumerate(("a", "b"), start=2):
            at = float(base + n)
            _rows(yard, "UPDATE schedules SET next_fire_at = %s, due_at = %s", (at, at))
            await scheduler.tick()
            run = await yard.get_run(fire_run_id(s.id, at))
            assert run.input == tag
            await yard.update_schedule(s.id, {"input": "b"})
        assert scheduler.started == 2

    asyncio.run(main())


def test_cancel_other_skips_a_fire_whose_run_was_never_written(yard: Runyard) -> None:
    """A fire left pending by a scheduler that died before writing its run: the next fire
    under cancel_other skips it (it never ran: no cancel needed), starts its own run, and
    no sweep starts the skipped one afterwards."""
    _define(yard)

    async def main() -> None:
        s, _ = await yard.create_schedule(
            ScheduleSpec(cron="0 0 1 1 *", workflow="tick", overlap="cancel_other")
        )
        dead_at = float(int(time.time()) - 30)
        dead = fire_run_id(s.id, dead_at)
        _rows(
            yard,
            "INSERT INTO schedule_fires (schedule_id, fire_at, kind, state, run_id, created_at)"
            " VALUES (%s, %s, 'cron', 'pending', %s, %s)",
            (s.id, dead_at, dead, dead_at),
        )
        at = float(int(time.time()) - 1)
        _rows(
            yard,
            "UPDATE schedules SET next_fire_at = %s, due_at = %s, last_run_id = %s, fired = 1",
            (at, at, dead),
        )
        scheduler = Scheduler(yard)  # (its first pass sweeps stale pending fires too)
        await scheduler.tick()
        await scheduler.sweep()
        fires = _rows(
            yard,
            "SELECT fire_at, state, run_id FROM schedule_fires WHERE schedule_id = %s "
            "ORDER BY fire_at",
            (s.id,),
        )
        assert fires == [(dead_at, "skipped", None), (at, "started", fire_run_id(s.id, at))]
        runs = _rows(yard, "SELECT id FROM runs WHERE schedule_id = %s", (s.id,))
        assert runs == [(fire_run_id(s.id, at),)]
        got = await yard.get_schedule(s.id)
        assert (got.fired, got.skipped) == (1, 1)

    asyncio.run(main())
