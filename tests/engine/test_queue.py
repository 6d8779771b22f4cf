"""A run's queue as the service shows it (``Service.queue``, behind ``GET
/v1/runs/{id}/queue``): the items still to do by default, in item order, paged."""

from __future__ import annotations

import asyncio

from runyard import Context, ItemState, Runyard
from tests.conftest import running_worker
from tests.waiting import wait_until_async


def test_the_queue_shows_what_is_left_to_do_in_order(yard: Runyard) -> None:
    release = asyncio.Event()

    @yard.workflow
    async def held(ctx: Context, x: int) -> int:
        if x == 1:
            await release.wait()
        return x

    async def main() -> None:
        handle = await yard.start("held", inputs=[0, 1, 2, 3])
        queue = await yard.queue(handle.id)
        assert [i.idx for i in queue] == [0, 1, 2, 3]
        assert {i.state for i in queue} == {ItemState.QUEUED}
        assert [i.idx for i in await yard.queue(handle.id, offset=1, limit=2)] == [1, 2]
        async with running_worker(yard, concurrency=4):

            async def only_the_held_one_left() -> object:
                left = await yard.queue(handle.id)
                return [(i.idx, i.state) for i in left] == [(1, ItemState.PROCESSING)]

            await wait_until_async(only_the_held_one_left, timeout=20, what="item 1 alone left")
            history = await yard.queue(handle.id, include_history=True)
            assert [i.idx for i in history] == [0, 1, 2, 3]
            done = await yard.queue(handle.id, state=ItemState.COMPLETED)
            assert [i.idx for i in done] == [0, 2, 3]
            release.set()
            await handle.result(timeout=20)
        assert await yard.queue(handle.id) == []

    asyncio.run(main())
