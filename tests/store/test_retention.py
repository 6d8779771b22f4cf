"""Retention: runs that ended longer ago than the retention period are purged with
everything they own, in bounded batches, by ``Runyard.purge``, by every worker now and
then, and by ``runyard db purge``. Runs that have not ended, recent ones and ones with
work left stay; usage outlives the purged runs."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
from typing import Any

import pytest

from runyard import Context, InvalidInput, RunNotFound, RunStatus, Runyard
from tests.client.support import cli_env
from tests.conftest import ROOT, make_yard, raw_sql, running_worker
from tests.waiting import wait_until_async

DAY = 86400.0
#: Every table with rows of a run (besides ``runs``).
RUN_TABLES = (
    "items",
    "steps",
    "attempts",
    "outputs",
    "credits",
    "logs",
    "sync_states",
    "waiters",
    "deliveries",
    "run_transitions",
)


def rows_of(db_url: str, run_id: str) -> dict[str, int]:
    counts = {
        t: raw_sql(db_url, f"SELECT count(*) FROM {t} WHERE run_id = %s", (run_id,))[0][0]
        for t in RUN_TABLES
    }
    counts["runs"] = raw_sql(db_url, "SELECT count(*) FROM runs WHERE id = %s", (run_id,))[0][0]
    return counts


def age(db_url: str, run_ids: list[str], days: float) -> None:
    """Move the runs' creation and end ``days`` into the past."""
    for run_id in run_ids:
        raw_sql(
            db_url,
            "UPDATE runs SET created_at = created_at - %s, finished_at = finished_at - %s "
            "WHERE id = %s",
            (days * DAY, days * DAY, run_id),
        )


def typed_workflow(yard: Runyard) -> None:
    @yard.workflow
    async def typed(ctx: Context, n: int) -> int:
        return n


async def invalid_runs(yard: Runyard, n: int) -> list[str]:
    """``n`` runs rejected at once (INVALID: ended, no worker needed)."""
    handles = [await yard.start("typed", inputs=["not a number"]) for _ in range(n)]
    assert {(await h.get()).status for h in handles} == {RunStatus.INVALID}
    return [h.id for h in handles]


def test_old_ended_runs_go_with_all_they_own_and_usage_stays(yard: Runyard, db_url: str) -> None:
    failed_once: set[int] = set()

    def flaky(n: int) -> str:
        if n not in failed_once:
            failed_once.add(n)
            raise RuntimeError("once")
        return "ok"

    @yard.workflow(retries=2)
    async def full(ctx: Context, n: int) -> int:
        ctx.logger.info("start %d", n)
        await ctx.step("flaky", flaky, n)  # a failed attempt, then a checkpoint
        await ctx.charge("work", 5)
        await ctx.emit({"n": n})
        await ctx.sync.save({"seen": n})
        return n

    @yard.workflow
    async def doomed(ctx: Context) -> None:
        raise RuntimeError("boom")

    @yard.workflow
    async def waits(ctx: Context) -> None:
        await ctx.wait_for_event("go", f"go:{ctx.run_id}", timeout=3600)

    async def main() -> None:
        async with running_worker(yard):
            old, recent = await yard.start("full", 1), await yard.start("full", 2)
            failed = await yard.start("doomed")
            canceled = await yard.start("waits")
            waiting = await yard.start("waits")
            scheduled = await yard.start("full", 3, delay=3600)
            invalid = await yard.start("full", inputs=["x"])
            for h in (old, recent):
                assert await h.result(timeout=20) in (1, 2)
            assert (await failed.wait(timeout=20)).status is RunStatus.FAILED
            for run_id in (canceled.id, waiting.id):
                await wait_until_async(
                    functools.partial(_waiting, yard, run_id), timeout=20, what=f"{run_id} waiting"
                )
            await yard.cancel(canceled.id)
            ended_old = [old.id, failed.id, canceled.id, invalid.id]
            live_old = [waiting.id, scheduled.id]
            before = {r: rows_of(db_url, r) for r in [*ended_old, recent.id, *live_old]}
            assert all(
                before[old.id][t] > 0 for t in RUN_TABLES if t not in ("waiters", "deliveries")
            )
            assert before[waiting.id]["waiters"] == 1
            usage = await yard.db.read(yard.store.usage, 0, 4e9, None)
            age(db_url, ended_old + live_old, 40)

            assert await yard.purge() == len(ended_old)  # RUNYARD_RETENTION_DAYS: 30
            for run_id in ended_old:
                assert set(rows_of(db_url, run_id).values()) == {0}, run_id
                with pytest.raises(RunNotFound):
                    await yard.get_run(run_id)
            for run_id in (recent.id, *live_old):
                assert rows_of(db_url, run_id) == before[run_id], run_id
            assert (await waiting.get()).status is RunStatus.RUNNING
            assert (await scheduled.get()).status is RunStatus.SCHEDULED
            # The purged run's credits still count over the period.
            assert await yard.db.read(yard.store.usage, 0, 4e9, None) == usage
            assert sum(line.credits for line in usage) == 10
            assert await yard.purge() == 0
            # A purged run id may be used again: a new run, with none of the old one's rows.
            again = await yard.start("full", 1, run_id=old.id)
            assert again.created and await again.result(timeout=20) == 1
            assert (await again.get()).credits == 5
            await yard.cancel(waiting.id)

    asyncio.run(main())


async def _waiting(yard: Runyard, run_id: str) -> bool:
    return (await yard.get_run(run_id)).waiting_for is not None


def test_a_run_with_work_left_is_kept(yard: Runyard, db_url: str) -> None:
    """A FAILED run whose on_failure handler is still running stays until it is done."""
    release = asyncio.Event()

    async def handler(info: Any) -> None:
        await release.wait()

    @yard.workflow(on_failure=handler)
    async def doomed(ctx: Context) -> None:
        raise RuntimeError("boom")

    async def hook_done(run_id: str) -> bool:
        read = yard.store.get_items
        hooks = await yard.db.read(lambda tx: read(tx, run_id, kinds=["hook"]))
        return bool(hooks) and all(h.state.value == "completed" for h in hooks)

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("doomed")
            assert (await h.wait(timeout=20)).status is RunStatus.FAILED
            age(db_url, [h.id], 40)
            assert await yard.purge() == 0
            assert (await h.get()).status is RunStatus.FAILED
            release.set()
            await wait_until_async(
                lambda: hook_done(h.id), timeout=20, what="the failure hook completed"
            )
            assert await yard.purge() == 1
            assert set(rows_of(db_url, h.id).values()) == {0}

    asyncio.run(main())


def test_purge_deletes_in_bounded_batches(yard: Runyard, db_url: str) -> None:
    typed_workflow(yard)

    async def main() -> None:
        ids = await invalid_runs(yard, 7)
        now = await yard.db.read(yard.store.now)
        batches = [await yard.db.write(yard.store.purge_txn, now + 1, 3) for _ in range(4)]
        assert batches == [3, 3, 1, 0]
        assert all(rows_of(db_url, r)["runs"] == 0 for r in ids)

        ids = await invalid_runs(yard, 5)
        assert await yard.purge(older_than_days=0, batch=2) == 5
        refused: list[dict[str, Any]] = [  # (deliberately ill-typed, some of them)
            {"older_than_days": -1},
            {"older_than_days": "1"},
            {"older_than_days": float("inf")},
            {"batch": 0},
        ]
        for bad in refused:
            with pytest.raises(InvalidInput):
                await yard.purge(**bad)

    asyncio.run(main())
    ids = asyncio.run(invalid_runs(yard, 2))
    assert yard.sync.purge(0) == 2 and rows_of(db_url, ids[0])["runs"] == 0


def test_events_older_than_the_cutoff_go_too(yard: Runyard, db_url: str) -> None:
    """Events belong to no run; a purge deletes those notified before its cutoff (in
    batches) and keeps the newer ones, which a wait's lookback may still find."""

    async def main() -> None:
        for i in range(7):
            await yard.notify(f"old-{i}", {"i": i})
        raw_sql(db_url, "UPDATE events SET created_at = created_at - %s", (40 * DAY,))
        await yard.notify("new", {"fresh": True})
        assert await yard.purge(older_than_days=30, batch=3) == 0  # no run to purge
        left = raw_sql(db_url, "SELECT event_id FROM events ORDER BY id")
        assert left == [("new",)]

    asyncio.run(main())


def test_workers_purging_at_once_take_different_runs(db_url: str) -> None:
    yards = [make_yard(db_url) for _ in range(3)]
    for y in yards:
        typed_workflow(y)

    async def main() -> None:
        try:
            ids = await invalid_runs(yards[0], 40)
            counts = await asyncio.gather(*(y.purge(0, batch=4) for y in yards))
            assert sum(counts) == 40
            assert all(rows_of(db_url, r)["runs"] == 0 for r in ids)
        finally:
            for y in yards:
                await y.aclose()

    asyncio.run(main())


def test_every_worker_purges_now_and_then(db_url: str) -> None:
    yard = make_yard(db_url, retention_days=1.0)
    typed_workflow(yard)

    async def main() -> None:
        try:
            old = await invalid_runs(yard, 3)
            recent = await invalid_runs(yard, 1)
            age(db_url, old, 2)
            async with running_worker(yard, purge_interval_s=0.2):
                await wait_until_async(
                    lambda: all(rows_of(db_url, r)["runs"] == 0 for r in old),
                    timeout=15,
                    what="the old runs purged",
                )
            assert (await yard.get_run(recent[0])).status is RunStatus.INVALID
        finally:
            await yard.aclose()

    asyncio.run(main())


def test_a_fork_outlives_its_source(yard: Runyard, db_url: str) -> None:
    calls: list[str] = []

    def step(name: str) -> str:
        calls.append(name)
        return name

    @yard.workflow
    async def three(ctx: Context) -> list[str]:
        return [await ctx.step(f"s{i}", step, f"s{i}") for i in (1, 2, 3)]

    async def main() -> None:
        async with running_worker(yard):
            source = await yard.start("three")
            assert await source.result(timeout=20) == ["s1", "s2", "s3"]
        fork = await yard.fork(source.id, 3)  # no worker now: it waits, QUEUED
        age(db_url, [source.id], 40)
        assert await yard.purge() == 1
        calls.clear()
        async with running_worker(yard):
            assert await fork.result(timeout=20) == ["s1", "s2", "s3"]
        assert calls == ["s3"]

    asyncio.run(main())


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runyard", "db", "purge", *args],
        env=cli_env(**env),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_db_purge_command(yard: Runyard, db_url: str) -> None:
    typed_workflow(yard)
    old = asyncio.run(invalid_runs(yard, 2))
    recent = asyncio.run(invalid_runs(yard, 1))
    age(db_url, old, 20)
    yard.close()

    done = _cli("--days", "10", "--json", "--database-url", db_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"purged": 2, "older_than_days": 10.0}
    assert [rows_of(db_url, r)["runs"] for r in [*old, *recent]] == [0, 0, 1]

    # The default period is RUNYARD_RETENTION_DAYS; the database from the environment.
    age(db_url, recent, 3)
    human = _cli(RUNYARD_DATABASE_URL=db_url, RUNYARD_RETENTION_DAYS="2.5")
    assert human.returncode == 0, human.stderr
    assert human.stdout.strip() == "purged 1 run(s) that ended more than 2.5 day(s) ago"

    for args, env, message in (
        (["--days", "-1"], {}, "--days"),
        ([], {"RUNYARD_RETENTION_DAYS": "0"}, "RUNYARD_RETENTION_DAYS must be a positive"),
        ([], {"RUNYARD_RETENTION_DAYS": "nan"}, "RUNYARD_RETENTION_DAYS must be a positive"),
        ([], {"RUNYARD_RETENTION_DAYS": "inf"}, "RUNYARD_RETENTION_DAYS must be a positive"),
    ):
        refused = _cli(*args, RUNYARD_DATABASE_URL=db_url, **env)
        assert refused.returncode == 2, refused.stdout
        assert message in refused.stderr
