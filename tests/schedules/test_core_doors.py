"""``runyard server`` and ``runyard dev`` fire schedules (every process that serves
runs the scheduler), on both backends: here each is the only scheduler there is."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runyard import Context, Runyard
from runyard.errors import InvalidInput
from runyard.models import RunStatus
from runyard.service import ScheduleSpec
from tests.cli.test_dev import DevProcess
from tests.client.support import ServerProcess, free_port
from tests.conftest import make_yard, running_worker
from tests.waiting import NotYet, wait_until_async


async def _two_fires_ran(yard: Runyard, sid: str) -> bool | NotYet:
    runs = (await yard.list_runs(schedule_id=sid, limit=100)).items
    done = [r for r in runs if r.status == RunStatus.SUCCEEDED]
    return len(done) >= 2 or NotYet([(r.id, r.status) for r in runs])


def test_the_server_fires_schedules(db_url: str, tmp_path: Path) -> None:
    """A server, and a worker that does not schedule: the server's scheduler fires."""
    yard = make_yard(db_url)

    @yard.workflow
    async def stamp(ctx: Context) -> str:
        return "ok"

    server = ServerProcess(db_url, tmp_path / "server.log", "ry_" + "s" * 38)
    server.start()
    try:

        async def main() -> None:
            async with running_worker(yard, schedules=False):  # (publishes stamp, runs it)
                await yard.create_schedule(
                    ScheduleSpec(cron="* * * * * *", workflow="stamp"), schedule_id="srv"
                )
                await wait_until_async(
                    lambda: _two_fires_ran(yard, "srv"), timeout=30, what="fired by the server"
                )
                # fire lag (fire time -> run written): the scheduler sleeps until the
                # fire is due, it does not poll (its backstop is 5 s)
                runs = (await yard.list_runs(schedule_id="srv", limit=100)).items
                lags = [r.created_at - int(r.id.rsplit("@", 1)[1]) / 1000 for r in runs]
                assert lags and all(0 <= lag < 1.0 for lag in lags), lags

        asyncio.run(main())
    finally:
        server.stop()
        yard.close()


def test_dev_fires_schedules(db_url: str, tmp_path: Path) -> None:
    yard = make_yard(db_url)
    dev = DevProcess(
        tmp_path, free_port(), "tests.apps.sched_app:yard", RUNYARD_DATABASE_URL=db_url
    )
    try:
        dev.wait_for(r"Workflows:\s+(.*)")

        async def main() -> None:
            async def created() -> bool | NotYet:
                try:
                    await yard.create_schedule(
                        ScheduleSpec(cron="* * * * * *", workflow="stamp"), schedule_id="dev"
                    )
                except InvalidInput as exc:  # (until dev has published the workflow)
                    return NotYet(exc.message)
                return True

            await wait_until_async(created, timeout=30, what="schedule created")
            await wait_until_async(
                lambda: _two_fires_ran(yard, "dev"), timeout=30, what="fired by runyard dev"
            )

        asyncio.run(main())
    finally:
        assert dev.stop() == 0
        yard.close()
