"""A worker whose database work fails (every claim, look for work, heartbeat and recovery
pass) says so once per loop, keeps trying, says when it works again and goes on serving."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest

from runyard import Context, RunStatus
from tests.conftest import make_yard, running_worker
from tests.waiting import NotYet, wait_until_async

LOOPS = ("claiming work", "heartbeat (extending leases)", "recovering expired leases")


def test_a_worker_cut_off_from_its_database_says_so_and_recovers(
    db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    yard = make_yard(db_url)

    @yard.workflow
    async def echo(ctx: Context, x: int) -> int:
        return x

    broken = False

    refused: Counter[str] = Counter()  # calls refused while broken, by store function

    def failing(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if broken:
                refused[name] += 1
                raise RuntimeError("injected: the database refuses")
            return real(*args, **kwargs)

        return call

    store = yard.store
    for name in ("has_due_work", "claim_txn", "heartbeat_txn", "recover_txn"):
        monkeypatch.setattr(store, name, failing(name, getattr(store, name)))
    caplog.set_level(logging.WARNING, logger="runyard.worker")

    def said(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    async def main() -> tuple[Any, Any]:
        nonlocal broken
        async with running_worker(yard) as w:
            first = await (await yard.start("echo", 1)).wait(timeout=20)
            broken = True

            def each_loop_refused_twice() -> bool | NotYet:
                # (A second try of each: a loop that spoke once per try would have twice.)
                claims = refused["has_due_work"] + refused["claim_txn"]
                tries = (claims, refused["heartbeat_txn"], refused["recover_txn"])
                return min(tries) >= 2 or NotYet(refused)

            await wait_until_async(
                each_loop_refused_twice, timeout=15, what="every loop refused twice"
            )
            assert all(said(f"{loop} failed (RuntimeError") for loop in LOOPS), caplog.text
            broken = False
            await wait_until_async(
                lambda: all(said(f"{loop} works again") for loop in LOOPS),
                timeout=15,
                what="every loop working again",
            )
            second = await (await yard.start("echo", 2)).wait(timeout=20)
            assert w.executed == 2
        return first, second

    try:
        first, second = asyncio.run(main())
    finally:
        yard.close()
    assert (first.status, second.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED)
    assert second.result == 2
    for loop in LOOPS:
        # Once when it began and once when it ended, not once per try.
        assert len(said(f"{loop} failed")) == 1, caplog.text
        assert len(said(f"{loop} works again")) == 1, caplog.text
        assert not said(f"{loop} still failing"), caplog.text
    assert len(said("works again")) == len(said("failed (")) == len(LOOPS), caplog.text
