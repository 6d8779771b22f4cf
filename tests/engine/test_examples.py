"""The bundled example workflows do what the README says."""

from __future__ import annotations

import asyncio
import dataclasses

from runyard import RunStatus, Runyard
from runyard.config import Settings
from tests.conftest import running_worker
from tests.waiting import wait_until_async


def _examples_on(db_url: str) -> Runyard:
    from runyard import examples

    yard = examples.yard
    yard.close()
    # Opened again, on the test's database (and migrated there first).
    yard.core._store = None
    yard.core._ready = False
    yard.settings = dataclasses.replace(Settings.from_env(db_url), lease_s=2.0, poll_s=0.2)
    return yard


def test_examples(db_url: str) -> None:
    yard = _examples_on(db_url)

    async def main() -> None:
        async with running_worker(yard):
            batch = await yard.start(
                "enrich_companies",
                inputs=[
                    {"domain": "acme.com"},
                    {"domain": "globex.io"},
                    {"domain": "NOT A DOMAIN"},
                ],
            )
            run = await batch.wait(timeout=30)
            assert run.status is RunStatus.PARTIAL_SUCCEEDED
            assert run.credits == 2 + 6
            assert {o.data["domain"] for o in await yard.outputs(batch.id)} == {
                "acme.com",
                "globex.io",
            }
            items = await yard.items(batch.id)
            assert sum(1 for i in items if i.kind == "map") == 6

            flaky = await yard.start("flaky_fetch", {"url": "https://x.test", "fail_rate": 0.3})
            assert (await flaky.result(timeout=30))["status"] == 200

            ap = await yard.start("approval", {"amount": 12.5, "reason": "books"})

            async def waiting() -> bool:
                return (await ap.get()).waiting_for == f"event:approve:{ap.id}"

            await wait_until_async(waiting, timeout=20, what="the approval waiting for its event")
            assert await yard.notify(f"approve:{ap.id}", {"approved": True}) == [ap.id]
            assert (await ap.result(timeout=30))["approved"] is True

            feed = await yard.start("sync_feed", sync_mode="incremental", max_results=3)
            assert (await feed.result(timeout=30))["new_entries"] == 3
            await yard.continue_(feed.id)

            async def second() -> bool:
                r = await yard.get_run(feed.id)
                return r.iteration == 2 and r.terminal

            await wait_until_async(second, timeout=20, what="the feed's second iteration ended")
            assert [o.data["entry"] for o in await yard.outputs(feed.id)] == [1, 2, 3, 4, 5, 6]

    try:
        asyncio.run(main())
    finally:
        yard.close()
