"""``ctx.logger``: lines stored with the run, once, fenced, readable in order, and all of
them stored before the run's outcome is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runyard import Context, InvalidInput, RunNotFound, Runyard, SyncContext
from runyard.models import LogLine
from tests.apps.e2e_support import spawn, wait_registered
from tests.conftest import WorkerProcess, make_yard, running_worker
from tests.waiting import wait_until_async


def test_lines_are_stored_once_with_item_iteration_and_attempt(yard: Runyard) -> None:
    @yard.workflow
    async def talk(ctx: Context, who: str) -> str:
        ctx.logger.info("hello %s", who)
        await ctx.step("one", lambda: 1)
        ctx.logger.debug("before the nap")
        # Handed back: the rest runs in a second execution, which replays the lines above.
        await ctx.sleep("nap", 0.3)
        ctx.logger.warning("after the nap, %s", who)
        return who

    async def main() -> tuple[str, list[LogLine]]:
        async with running_worker(yard):
            h = await yard.start("talk", inputs=["ann", "bob"])
            assert (await h.result(timeout=20)) == ["ann", "bob"]
            lines = await yard.logs(h.id)
        by_item = {
            item: [
                (x.level, x.message, x.iteration, x.attempt) for x in lines if x.item_idx == item
            ]
            for item in (0, 1)
        }
        for item, who in ((0, "ann"), (1, "bob")):
            assert by_item[item] == [
                ("INFO", f"hello {who}", 1, 1),
                ("DEBUG", "before the nap", 1, 1),
                ("WARNING", f"after the nap, {who}", 1, 2),
            ]
        assert [x.id for x in lines] == sorted(x.id for x in lines)
        assert {x.run_id for x in lines} == {h.id}

        # Paged with after/limit, in the order written; the synchronous facade agrees.
        first = await yard.logs(h.id, limit=4)
        rest = await yard.logs(h.id, after=first[-1].id, limit=100)
        assert first + rest == lines and len(first) == 4
        assert await yard.logs(h.id, after=lines[-1].id) == []
        return h.id, lines

    run_id, lines = asyncio.run(main())
    assert yard.sync.logs(run_id) == lines


def test_the_outcome_is_written_after_the_lines_logged_before_it(yard: Runyard) -> None:
    """A client that reads the logs as soon as it has the result sees every line, from a
    plain ``def`` workflow (lines logged from a thread) as from an ``async def`` one."""

    @yard.workflow
    def many_from_a_thread(ctx: SyncContext, n: int) -> int:
        for i in range(n):
            ctx.logger.info("line %d", i)
        return n

    @yard.workflow
    async def many_from_the_loop(ctx: Context, n: int) -> int:
        for i in range(n):
            ctx.logger.info("line %d", i)
        return n

    async def main() -> None:
        async with running_worker(yard):
            handles = [
                await yard.start(name, 150)
                for name in ("many_from_a_thread", "many_from_the_loop") * 3
            ]
            for h in handles:
                assert await h.result(timeout=30) == 150
                lines = await yard.logs(h.id, limit=1000)
                assert [x.message for x in lines] == [f"line {i}" for i in range(150)], h.id

    asyncio.run(main())


def test_what_a_database_cannot_store_as_text_is_spelt_out(
    yard: Runyard, caplog: pytest.LogCaptureFixture
) -> None:
    @yard.workflow
    async def odd(ctx: Context) -> int:
        ctx.logger.error("nul \x00 and a lone surrogate \udc80")
        after: int = await ctx.step("after", lambda: 1)
        return after

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("odd")
            assert await h.result(timeout=20) == 1
            lines = await yard.logs(h.id)
        assert [(x.level, x.message) for x in lines] == [
            ("ERROR", "nul \\x00 and a lone surrogate \\udc80")
        ]
        # The console shows the same text: one a terminal (or a pipe) can take.
        shown = [r.getMessage() for r in caplog.records if r.name == "runyard.run.odd"]
        assert shown == ["nul \\x00 and a lone surrogate \\udc80"]

    asyncio.run(main())


def test_a_worker_that_lost_the_item_stores_no_line(yard: Runyard) -> None:
    @yard.workflow
    async def quiet(ctx: Context) -> None:
        return None

    async def main() -> None:
        h = await yard.start("quiet")  # no worker: it waits, QUEUED
        db, store = yard.db, yard.store
        wrefs = [yard.workflows["quiet"].ref]
        (a,) = await db.write(store.claim_txn, "worker-a", wrefs, 1, 0.05)
        assert await db.write(store.log_txn, a.fence, 1, a.attempt, "INFO", "from a") is True
        await asyncio.sleep(0.2)  # A's lease expires: another worker takes the item over
        assert await db.write(store.recover_txn) == [h.id]
        (b,) = await wait_until_async(
            lambda: db.write(store.claim_txn, "worker-b", wrefs, 1, 30.0),
            timeout=5,
            what="worker B claims the recovered item",
        )
        late = await db.write(store.log_txn, a.fence, 1, a.attempt, "INFO", "from a, too late")
        assert late is False
        assert await db.write(store.log_txn, b.fence, 1, b.attempt, "INFO", "from b") is True
        lines = await yard.logs(h.id)
        assert [(x.message, x.attempt) for x in lines] == [("from a", 1), ("from b", 2)]

    asyncio.run(main())


def test_unknown_runs_and_bad_paging_are_refused(yard: Runyard) -> None:
    @yard.workflow
    async def nothing(ctx: Context) -> None:
        return None

    async def main() -> None:
        with pytest.raises(RunNotFound):
            await yard.logs("no-such-run")
        h = await yard.start("nothing")
        for kwargs, field in (
            ({"limit": 0}, "limit"),
            ({"limit": 10_001}, "limit"),
            ({"after": -1}, "after"),
            ({"after": "3"}, "after"),
        ):
            with pytest.raises(InvalidInput) as bad:
                await yard.logs(h.id, **kwargs)
            assert bad.value.details[0]["field"] == field
        assert await yard.logs(h.id) == []

    asyncio.run(main())


def test_lines_logged_in_a_worker_process(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    spawn(worker_procs, "client_app", db_url, tmp_path, concurrency=4)

    async def main() -> None:
        yard = make_yard(db_url)
        try:
            await wait_registered(yard, ["chatty"])
            h = await yard.start("chatty", 120)
            assert await h.result(timeout=30) == 120
            lines = await yard.logs(h.id, limit=1000)
        finally:
            await yard.aclose()
        assert [(x.level, x.message) for x in lines] == [
            *(("INFO", f"line {i} of 120") for i in range(120)),
            ("WARNING", "done"),
        ]
        assert {(x.item_idx, x.iteration, x.attempt) for x in lines} == {(0, 1, 1)}

    asyncio.run(main())


def test_a_bad_log_call_never_fails_the_workflow_and_tracebacks_are_kept(yard: Runyard) -> None:
    """Format arguments that do not match the message are noted in the line (logging
    itself reports them rather than raising); ``logger.exception`` and ``exc_info=``
    store the traceback; a mapping fills named placeholders."""

    @yard.workflow
    async def clumsy(ctx: Context) -> str:
        ctx.logger.info("two %s %s", "only-one")
        ctx.logger.info("%(who)s is here", {"who": "ann"})
        try:
            raise KeyError("missing-thing")
        except KeyError:
            ctx.logger.exception("lookup failed for %s", "x")
        ctx.logger.warning("kept as given", exc_info=ValueError("given"))
        return "still fine"

    async def main() -> list[LogLine]:
        async with running_worker(yard):
            h = await yard.start("clumsy")
            assert await h.result(timeout=20) == "still fine"
            return await yard.logs(h.id)

    mismatch, named, failed, given = asyncio.run(main())
    assert mismatch.message.startswith("two %s %s (with arguments ('only-one',): ")
    assert named.message == "ann is here"
    assert failed.level == "ERROR"
    assert failed.message.startswith("lookup failed for x\nTraceback (most recent call last):")
    assert failed.message.endswith("KeyError: 'missing-thing'")
    assert given.message == "kept as given\nValueError: given"
