"""Schedules' rules through the service layer, in process, on both backends: bad input
named by field, DST with the clock injected, the catch-up window, the overlap policies
with runs that outlast the interval, control (pause, resume, update, delete, trigger,
backfill, remaining_actions, pause_on_failure) and incremental sync across fires."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from runyard import Context, Runyard
from runyard.errors import InvalidInput, NotFound
from runyard.models import RunStatus
from runyard.service import ScheduleSpec
from runyard.service.cron import Cron, jitter_offset
from runyard.service.scheduler import fire_due_txn
from tests.conftest import raw_sql, running_worker
from tests.waiting import NotYet, stays_true_async, wait_until_async

PARIS = ZoneInfo("Europe/Paris")


def _define(yard: Runyard) -> dict[str, Any]:
    """The workflows of these tests; the returned dict steers them."""
    steer: dict[str, Any] = {"rows": [1, 2, 3], "fail": False}

    @yard.workflow
    async def tick(ctx: Context, tag: Any = None) -> Any:
        return tag

    @yard.workflow
    async def hold(ctx: Context, name: str) -> str:
        """Runs until the event ``name`` is notified (outlasts any interval)."""
        await ctx.wait_for_event("release", name, timeout=120)
        return name

    @yard.workflow
    async def boom(ctx: Context) -> None:
        raise RuntimeError("boom")

    @yard.workflow
    async def sync_rows(ctx: Context) -> dict[str, Any]:
        seen = ctx.sync.state or 0
        new = [r for r in steer["rows"] if r > seen]
        for r in steer["rows"]:  # every row, keyed: only new keys are delivered
            await ctx.emit({"row": r}, key=f"row-{r}")
        await ctx.sync.save(max(steer["rows"]))
        if steer["fail"]:  # (after saving: a failed iteration's state must not count)
            raise RuntimeError("source down")
        return {"seen": seen, "new": new}

    return steer


async def _fires(yard: Runyard, sid: str) -> list[tuple[float, str, str | None]]:
    s = await yard.get_schedule(sid)
    return sorted((f.fire_at, f.state, f.run_id) for f in s.recent_fires)


async def _runs(yard: Runyard, sid: str) -> list[Any]:
    page = await yard.list_runs(schedule_id=sid, limit=100)
    return sorted(page.items, key=lambda r: r.id)


# -- bad input -------------------------------------------------------------------------


def test_bad_input_names_the_field(yard: Runyard) -> None:
    _define(yard)
    past = time.time() - 60

    async def main() -> None:
        cases: list[tuple[ScheduleSpec, str]] = [
            (ScheduleSpec(cron="61 * * * *", workflow="tick"), "cron"),
            (ScheduleSpec(cron="* * *", workflow="tick"), "cron"),
            (ScheduleSpec(cron="0 9 * * *", timezone="Mars/Olympus", workflow="tick"), "timezone"),
            (ScheduleSpec(at=past, workflow="tick"), "at"),
            (ScheduleSpec(cron="* * * * *", workflow="tick", catchup_window=5), "catchup_window"),
            (ScheduleSpec(cron="* * * * *", workflow="nope"), "workflow"),
            (ScheduleSpec(cron="* * * * *", task_id="no-such-task"), "task_id"),
            (ScheduleSpec(cron="* * * * *", workflow="tick", overlap="queue"), "overlap"),
            (ScheduleSpec(workflow="tick"), "cron"),
        ]
        for spec, field in cases:
            with pytest.raises(InvalidInput) as info:
                await yard.create_schedule(spec)
            assert info.value.details[0]["field"] == field, (spec, info.value.details)
        assert (await yard.list_schedules())[0] == []
        with pytest.raises(NotFound):
            await yard.get_schedule("sch_missing")

    asyncio.run(main())


# -- DST, with the clock injected --------------------------------------------------------


def _paris(year: int, month: int, day: int, hour: int) -> float:
    return datetime(year, month, day, hour, tzinfo=PARIS).timestamp()


async def _drive(yard: Runyard, sid: str, start: float, until: float) -> list[float]:
    """Fire schedule ``sid`` from ``start`` to ``until`` with an injected clock: each
    pass runs at its next fire time, as a scheduler that is always up would."""
    core = yard.core
    store = core.store
    spec = (await yard.get_schedule(sid)).spec
    assert spec.cron is not None
    first = Cron(spec.cron, spec.timezone).next_after(start)
    raw_sql(
        core.settings.database_url,
        "UPDATE schedules SET next_fire_at = %s, due_at = %s WHERE id = %s",
        (first, first, sid),
    )
    fired: list[float] = []
    now = first
    while now < until:
        done = await core.write(fire_due_txn, store, 10, now + 0.5, inline=False)
        fired += [s.fire_at for s in done.later]
        nxt = (await yard.get_schedule(sid)).next_fire_at
        assert nxt is not None and nxt > now
        now = nxt
    return fired


def test_dst_daily_0230_europe_paris(yard: Runyard) -> None:
    """Spring: 02:30 does not exist on 29 March 2026, the fire is at 03:00 (once).
    Autumn: 02:30 happens twice on 25 October 2026, the fire happens once (the first)."""
    _define(yard)

    async def main() -> None:
        s, _ = await yard.create_schedule(
            ScheduleSpec(
                cron="30 2 * * *",
                timezone="Europe/Paris",
                workflow="tick",
                overlap="allow_all",  # (no worker starts the runs: none ends)
                paused=True,
            )
        )
        await yard.resume_schedule(s.id)  # (no worker runs: the test drives the clock)
        spring = await _drive(yard, s.id, _paris(2026, 3, 27, 12), _paris(2026, 3, 31, 12))
        assert [datetime.fromtimestamp(t, PARIS).isoformat() for t in spring] == [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
            "2026-03-31T02:30:00+02:00",
        ]
        autumn = await _drive(yard, s.id, _paris(2026, 10, 23, 12), _paris(2026, 10, 27, 12))
        assert [datetime.fromtimestamp(t, PARIS).isoformat() for t in autumn] == [
            "2026-10-24T02:30:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-26T02:30:00+01:00",
            "2026-10-27T02:30:00+01:00",
        ]
        runs = await _runs(yard, s.id)  # (pending: no worker started them)
        assert runs == []
        fires = await _fires(yard, s.id)
        assert len(fires) == 8 and {f[1] for f in fires} == {"pending"}

    asyncio.run(main())


def test_catch_up_window_with_injected_clock(yard: Runyard) -> None:
    """Down from 12:00:00 to 12:01:00 with a fire every 5 s and a 20 s window: the fires
    of the last 20 s run (in order), the older ones are recorded as missed, no burst."""
    _define(yard)

    async def main() -> None:
        s, _ = await yard.create_schedule(
            ScheduleSpec(
                cron="*/5 * * * * *", workflow="tick", catchup_window=20, overlap="allow_all"
            )
        )
        await yard.pause_schedule(s.id)
        core, store = yard.core, yard.core.store
        t0 = _paris(2026, 6, 1, 12)
        raw_sql(
            core.settings.database_url,
            "UPDATE schedules SET next_fire_at = %s, due_at = %s, paused = FALSE WHERE id = %s",
            (t0, t0, s.id),
        )
        now = t0 + 60.5  # back up: 13 fire times have passed (12:00:00 ... 12:01:00)
        done = await core.write(fire_due_txn, store, 10, now, inline=False)
        started = [round(x.fire_at - t0) for x in done.later]
        assert started == [45, 50, 55, 60]  # younger than 20 s
        got = await yard.get_schedule(s.id)
        assert got.skipped == 9 and got.fired == 4
        assert got.next_fire_at == t0 + 65
        missed = [round(f.fire_at - t0) for f in got.recent_fires if f.state == "missed"]
        assert sorted(missed) == [15, 20, 25, 30, 35, 40]  # (the last 10 fires are shown)

    asyncio.run(main())


# -- overlap policies --------------------------------------------------------------------


def test_overlap_policies_with_runs_that_outlast_the_interval(yard: Runyard) -> None:
    """A fire every second; each run waits for its release event (held for seconds)."""
    _define(yard)

    async def main() -> None:
        async with running_worker(yard):
            ids = {}
            # (the buffering ones stop after their actions: a paused schedule's buffered
            # fires wait for its resume)
            actions = {"buffer_one": 2, "buffer_all": 4}
            for policy in ("skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"):
                s, _ = await yard.create_schedule(
                    ScheduleSpec(
                        cron="* * * * * *",
                        workflow="hold",
                        input=f"rel-{policy}",
                        overlap=policy,
                        remaining_actions=actions.get(policy),
                    ),
                    schedule_id=f"ov-{policy}",
                )
                ids[policy] = s.id

            for p, sid in ids.items():
                n = actions.get(p, 4)

                async def fired(sid: str = sid, n: int = n) -> bool:
                    return len(await _fires(yard, sid)) >= n

                await wait_until_async(fired, timeout=20, what=sid)
            for policy in ("skip", "cancel_other", "allow_all"):
                await yard.pause_schedule(ids[policy])
            states = {p: [f[1] for f in await _fires(yard, sid)] for p, sid in ids.items()}
            runs = {p: await _runs(yard, sid) for p, sid in ids.items()}
            # skip: one run, the other fires skipped
            assert len(runs["skip"]) == 1 and states["skip"][0] == "started"
            assert set(states["skip"][1:]) == {"skipped"}
            # buffer_one: one run, one fire waiting
            assert len(runs["buffer_one"]) == 1
            assert states["buffer_one"] == ["started", "buffered"]
            # buffer_all: one run, every later fire waiting
            assert len(runs["buffer_all"]) == 1
            assert states["buffer_all"] == ["started", "buffered", "buffered", "buffered"]
            # cancel_other: each fire canceled the run before it
            co = runs["cancel_other"]
            assert len(co) >= 3
            assert [r.status for r in co[:-1]] == [RunStatus.CANCELED] * (len(co) - 1)
            assert co[-1].status in (RunStatus.RUNNING, RunStatus.QUEUED)
            # allow_all: every fire's run, all running at once
            aa = runs["allow_all"]
            assert len(aa) >= 4 and all(not r.terminal for r in aa)
            # The buffered fires start once the runs before them end, one after another.
            for policy in ("buffer_one", "buffer_all"):
                await yard.notify(f"rel-{policy}")
            n_all = states["buffer_all"].count("buffered") + 1

            async def ended(sid: str, n: int) -> bool | NotYet:
                rs = await _runs(yard, sid)
                done = [r for r in rs if r.status == RunStatus.SUCCEEDED]
                return len(done) == n or NotYet([r.status for r in rs])

            await wait_until_async(lambda: ended(ids["buffer_one"], 2), timeout=20, what="b1")
            await wait_until_async(lambda: ended(ids["buffer_all"], n_all), timeout=30, what="ba")
            ba = await _runs(yard, ids["buffer_all"])
            spans = sorted((r.started_at, r.finished_at) for r in ba)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
            for policy in ("skip", "cancel_other", "allow_all"):
                await yard.notify(f"rel-{policy}")

    asyncio.run(main())


# -- control -----------------------------------------------------------------------------


def test_pause_resume_update_delete_trigger(yard: Runyard) -> None:
    _define(yard)

    async def main() -> None:
        async with running_worker(yard):
            s, created = await yard.create_schedule(
                ScheduleSpec(cron="* * * * * *", workflow="tick", input="a"), schedule_id="ctl"
            )
            again, created_again = await yard.create_schedule(
                ScheduleSpec(cron="0 0 * * *", workflow="tick"), schedule_id="ctl"
            )
            assert created and not created_again and again.spec.cron == "* * * * * *"
            assert len(s.next_fires) == 10
            assert all(b - a == 1 for a, b in itertools.pairwise(s.next_fires))

            async def count() -> int:
                return len(await _runs(yard, "ctl"))

            await wait_until_async(lambda: _at_least(count, 2), timeout=15, what="2 runs")
            paused = await yard.pause_schedule("ctl", note="maintenance")
            assert paused.paused and paused.note == "maintenance" and paused.next_fire_at is None
            n = await count()
            await stays_true_async(lambda: _equals(count, n), for_s=2.5, what="no fire paused")
            # trigger fires even while paused
            fire = await yard.trigger_schedule("ctl")
            assert fire.kind == "trigger" and fire.run_id is not None
            await wait_until_async(lambda: _equals(count, n + 1), timeout=10, what="triggered")
            # update: every 2 s, a new input; from the next fire
            await yard.update_schedule("ctl", {"cron": "*/2 * * * * *", "input": "b"})
            resumed = await yard.resume_schedule("ctl")
            assert not resumed.paused and resumed.note is None
            assert resumed.next_fire_at is not None and resumed.next_fire_at % 2 == 0
            await wait_until_async(lambda: _at_least(count, n + 3), timeout=15, what="resumed")
            later = [r for r in await _runs(yard, "ctl") if r.created_at > resumed.updated_at]
            assert later and {r.input for r in later} == {"b"}
            fire_times = sorted(int(r.id.rsplit("@", 1)[1]) for r in later)
            assert all(t % 2000 == 0 for t in fire_times)
            await yard.delete_schedule("ctl")
            with pytest.raises(NotFound):
                await yard.get_schedule("ctl")
            m = await count()
            await stays_true_async(lambda: _at_most(count, m), for_s=2.5, what="deleted")

    asyncio.run(main())


def test_backfill_remaining_actions_pause_on_failure(yard: Runyard) -> None:
    _define(yard)

    async def main() -> None:
        async with running_worker(yard):
            _hourly, _ = await yard.create_schedule(
                ScheduleSpec(cron="0 * * * *", workflow="tick"), schedule_id="hourly"
            )
            now = time.time()
            start, end = (now // 3600 - 3) * 3600, (now // 3600) * 3600
            done = await yard.backfill_schedule("hourly", start, end, overlap="allow_all")
            assert done.created == 3 and done.existing == 0
            assert [f.fire_at for f in done.fires] == [start, start + 3600, start + 7200]
            again = await yard.backfill_schedule("hourly", start, end)
            assert again.created == 0 and again.existing == 3
            await wait_until_async(
                lambda: _all_succeeded(yard, "hourly", 3), timeout=20, what="backfilled runs"
            )
            with pytest.raises(InvalidInput) as info:
                await yard.backfill_schedule("hourly", now - 3600 * 24 * 365, now)
            assert info.value.details[0]["field"] == "end"

            # remaining_actions: two fires, then none
            two, _ = await yard.create_schedule(
                ScheduleSpec(cron="* * * * * *", workflow="tick", remaining_actions=2)
            )

            async def count() -> int:
                return len(await _runs(yard, two.id))

            await wait_until_async(lambda: _equals(count, 2), timeout=15, what="two fires")
            await stays_true_async(lambda: _equals(count, 2), for_s=2.0, what="no third")
            got = await yard.get_schedule(two.id)
            assert got.remaining_actions == 0 and got.next_fire_at is None and got.fired == 2

            # pause_on_failure: the failed run pauses the schedule before its next fire
            bad, _ = await yard.create_schedule(
                ScheduleSpec(cron="* * * * * *", workflow="boom", retries=0, pause_on_failure=True)
            )

            async def paused() -> bool | NotYet:
                s = await yard.get_schedule(bad.id)
                return s.paused or NotYet(s.recent_fires)

            await wait_until_async(paused, timeout=20, what="paused on failure")
            s = await yard.get_schedule(bad.id)
            assert s.note is not None and "FAILED" in s.note and s.failed >= 1
            assert len(await _runs(yard, bad.id)) == 1

    asyncio.run(main())


def test_trigger_overlap_and_jitter(yard: Runyard) -> None:
    """A trigger obeys its own overlap policy; jitter delays each fire by a fixed offset
    below it, the same in every process (derived from the schedule and the time)."""
    _define(yard)

    async def main() -> None:
        async with running_worker(yard):
            s, _ = await yard.create_schedule(
                ScheduleSpec(cron="0 0 1 1 *", workflow="hold", input="rel-trigger")
            )
            first = await yard.trigger_schedule(s.id)
            assert first.state == "started" and first.run_id is not None
            skipped = await yard.trigger_schedule(s.id, overlap="skip")
            assert skipped.state == "skipped" and skipped.run_id is None
            both = await yard.trigger_schedule(s.id, overlap="allow_all")
            assert both.state == "started" and both.run_id != first.run_id
            with pytest.raises(InvalidInput) as info:
                await yard.trigger_schedule(s.id, overlap="sometimes")
            assert info.value.details[0]["field"] == "overlap"
            await yard.notify("rel-trigger")

            jit, _ = await yard.create_schedule(
                ScheduleSpec(cron="*/2 * * * * *", workflow="tick", jitter=1.5)
            )

            async def three() -> bool | NotYet:
                runs = await _runs(yard, jit.id)
                return len(runs) >= 3 or NotYet(len(runs))

            await wait_until_async(three, timeout=20, what="three jittered fires")
            lags = [
                r.created_at - int(r.id.rsplit("@", 1)[1]) / 1000 for r in await _runs(yard, jit.id)
            ]
            assert all(0 <= lag < 1.5 + 0.5 for lag in lags), lags
            assert max(lags) > 0.05, lags  # (offsets are spread over [0, 1.5))
            offsets = [jitter_offset(jit.id, t, 1.5) for t in (1.0, 2.0, 3.0)]
            assert offsets == [jitter_offset(jit.id, t, 1.5) for t in (1.0, 2.0, 3.0)]
            assert all(0 <= o < 1.5 for o in offsets) and len(set(offsets)) == 3

    asyncio.run(main())


# -- incremental sync across fires -------------------------------------------------------


def test_incremental_sync_across_fires(yard: Runyard) -> None:
    """Three fires against a growing source: each run's outputs hold only the new
    records, each reads the state the previous successful fire saved; a failed fire does
    not advance the state."""
    steer = _define(yard)

    async def main() -> None:
        async with running_worker(yard):
            s, _ = await yard.create_schedule(
                ScheduleSpec(
                    cron="0 0 1 1 *",
                    workflow="sync_rows",
                    sync_mode="incremental",
                    max_results=1000,
                    overlap="allow_all",
                )
            )

            async def fire() -> Any:
                f = await yard.trigger_schedule(s.id)
                assert f.run_id is not None
                run = await yard.wait(f.run_id, 20)
                outs = await yard.outputs(f.run_id)
                return run, [o.data["row"] for o in outs]

            run1, out1 = await fire()
            assert run1.result == {"seen": 0, "new": [1, 2, 3]} and out1 == [1, 2, 3]
            steer["rows"] = [1, 2, 3, 4, 5]
            run2, out2 = await fire()
            assert run2.result == {"seen": 3, "new": [4, 5]} and out2 == [4, 5]
            steer["rows"], steer["fail"] = [1, 2, 3, 4, 5, 6], True
            failed, out_f = await fire()
            assert failed.status == RunStatus.FAILED and out_f == [6]
            steer["rows"], steer["fail"] = [1, 2, 3, 4, 5, 6, 7], False
            run3, out3 = await fire()
            # the state is the last successful fire's (5); 6 was delivered by the failed one
            assert run3.result == {"seen": 5, "new": [6, 7]} and out3 == [7]

    asyncio.run(main())


def test_continue_iterations_a_failed_one_does_not_advance(yard: Runyard) -> None:
    """Three iterations of one run (continue) against a growing source: each returns
    only what is new; the failed middle one does not advance the state."""
    steer = _define(yard)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("sync_rows", sync_mode="incremental", max_results=1000)
            assert await h.result(timeout=20) == {"seen": 0, "new": [1, 2, 3]}

            async def iteration_ended(n: int) -> Any:
                run = await yard.get_run(h.id)
                return run if run.iteration == n and run.terminal else NotYet(run.status)

            steer["rows"], steer["fail"] = [1, 2, 3, 4, 5], True
            await yard.continue_(h.id)
            second = await wait_until_async(lambda: iteration_ended(2), timeout=20, what="2")
            assert second.status == RunStatus.FAILED
            steer["rows"], steer["fail"] = [1, 2, 3, 4, 5, 6], False
            await yard.continue_(h.id)
            third = await wait_until_async(lambda: iteration_ended(3), timeout=20, what="3")
            assert third.result == {"seen": 3, "new": [4, 5, 6]}
            outs = await yard.outputs(h.id)
            by_iteration = {i: [o.data["row"] for o in outs if o.iteration == i] for i in (1, 2, 3)}
            assert by_iteration == {1: [1, 2, 3], 2: [4, 5], 3: [6]}  # each record once

    asyncio.run(main())


def test_incremental_schedule_on_its_own(yard: Runyard) -> None:
    """A fire every second, the source growing between fires: every fire's run emits
    only what is new, and together they deliver each record once."""
    steer = _define(yard)
    steer["rows"] = [1]

    async def main() -> None:
        async with running_worker(yard):
            s, _ = await yard.create_schedule(
                ScheduleSpec(cron="* * * * * *", workflow="sync_rows", sync_mode="incremental")
            )

            async def grown() -> bool | NotYet:
                runs = [r for r in await _runs(yard, s.id) if r.status == RunStatus.SUCCEEDED]
                if len(runs) >= 4:
                    return True
                if len(runs) >= len(steer["rows"]):  # a fire saw the source: it grows
                    steer["rows"] = [*steer["rows"], len(steer["rows"]) + 1]
                return NotYet(len(runs))

            await wait_until_async(grown, timeout=30, what="four fires")
            await yard.pause_schedule(s.id)
            runs = await _runs(yard, s.id)  # (ids sort by fire time)

            async def settled() -> bool:
                return all(r.terminal for r in await _runs(yard, s.id))

            await wait_until_async(settled, timeout=20, what="runs ended")
            delivered: list[int] = []
            for run in await _runs(yard, s.id):
                outs = [o.data["row"] for o in await yard.outputs(run.id)]
                assert run.result is None or outs == run.result["new"], (run.result, outs)
                delivered += outs
            assert delivered == sorted(set(delivered)) == list(range(1, len(delivered) + 1))
            assert len(runs) >= 4 and len(delivered) >= 3

    asyncio.run(main())


# -- helpers -----------------------------------------------------------------------------


async def _at_least(fn: Any, n: int) -> bool | NotYet:
    got = await fn()
    return got >= n or NotYet(got)


async def _at_most(fn: Any, n: int) -> bool:
    return bool(await fn() <= n)


async def _equals(fn: Any, n: int) -> bool | NotYet:
    got = await fn()
    return got == n or NotYet(got)


async def _all_succeeded(yard: Runyard, sid: str, n: int) -> bool | NotYet:
    runs = await _runs(yard, sid)
    ok = len(runs) == n and all(r.status == RunStatus.SUCCEEDED for r in runs)
    return ok or NotYet([r.status for r in runs])


def test_purge_takes_a_fire_record_with_its_run(yard: Runyard) -> None:
    _define(yard)

    async def main() -> None:
        async with running_worker(yard):
            s, _ = await yard.create_schedule(
                ScheduleSpec(cron="0 0 1 1 *", workflow="tick"), schedule_id="purged"
            )
            fire = await yard.trigger_schedule(s.id)
            assert fire.run_id is not None
            await yard.wait(fire.run_id, 20)
            assert len((await yard.get_schedule(s.id)).recent_fires) == 1
            await yard.purge(older_than_days=0)
            assert (await yard.get_schedule(s.id)).recent_fires == []

    asyncio.run(main())
