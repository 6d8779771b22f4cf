"""The store tells this process's hubs of what each of its transactions announced, once
committed (``Store.changes``): no call site wakes a hub by hand, and no watcher is
needed for a process to hear its own commits. Both backends."""

from __future__ import annotations

import asyncio

from runyard import Context, RunStatus
from runyard.store.hub import Hub, wait_event
from runyard.store.tx import RUN, RUN_END, STOP, WAKE

from ..conftest import make_yard


def test_a_commit_reaches_this_process_hubs_without_a_watcher(db_url: str) -> None:
    yard = make_yard(db_url)

    @yard.workflow
    async def slow(ctx: Context, x: int) -> int:
        return x

    async def main() -> None:
        hub = Hub(asyncio.get_running_loop())
        changes = yard.store.changes
        changes.subscribe(hub)
        changes.want(work=True, runs=True)
        handle = await yard.start("slow", 1)
        # The start announced new work; the hub heard it before start() returned.
        assert await hub.wait_wake(0)
        changed = hub.run_event(handle.id)
        canceled = await yard.cancel(handle.id)
        assert canceled == [handle.id]
        assert await wait_event(changed, 0)
        assert (await yard.get_run(handle.id)).status is RunStatus.CANCELED
        assert yard.core._watcher is None  # (nothing listened to other processes)

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_a_process_hears_only_what_it_wants(db_url: str) -> None:
    """Like its watcher: new work only where a worker runs, every run's changes only where
    something waits for runs; runs stopped (canceled, paused) always."""
    yard = make_yard(db_url)

    @yard.workflow
    async def slow(ctx: Context, x: int) -> int:
        return x

    async def main() -> None:
        hub = Hub(asyncio.get_running_loop())
        yard.store.changes.subscribe(hub)
        first = await yard.start("slow", 1)
        assert not await hub.wait_wake(0)  # no worker here: new work is not its business
        stopped = hub.run_event(first.id)
        await yard.cancel(first.id)
        assert await wait_event(stopped, 0)  # a stop always is
        yard.store.changes.want(work=True, runs=False)
        await yard.start("slow", 2)
        assert await hub.wait_wake(0)

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_changes_sort_what_a_transaction_announced() -> None:
    """One wake-up for the earliest due time announced, the runs in one hop."""
    loop = asyncio.new_event_loop()
    try:
        told: list[tuple[str, object]] = []

        class Recorder(Hub):
            def notify_wake(self, at: float | None = None) -> None:
                told.append(("wake", at))

            def notify_runs(self, run_ids: list[str]) -> None:
                told.append(("runs", sorted(run_ids)))

        from runyard.store.changes import Changes

        changes = Changes()
        changes.subscribe(Recorder(loop))
        changes.want(work=True, runs=True)
        changes.committed({(WAKE, "4102444800.000"), (RUN, "r1"), (RUN_END, "r2"), (STOP, "r3")})
        assert told == [("wake", 4102444800.0), ("runs", ["r1", "r2", "r3"])]
        told.clear()
        changes.committed({(WAKE, "4102444800.000"), (WAKE, "")})
        assert told == [("wake", None)]  # "now" covers any later time
    finally:
        loop.close()
