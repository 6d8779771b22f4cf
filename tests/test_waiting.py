"""The suite's one way of waiting (tests/waiting.py): it returns as soon as a condition
holds, and fails saying what it waited for and what it saw last."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.waiting import (
    NotYet,
    becomes_true,
    becomes_true_async,
    stays_true,
    stays_true_async,
    wait_until,
    wait_until_async,
)


def test_wait_until_returns_the_first_true_value_at_once() -> None:
    counter = itertools.count()
    started = time.monotonic()
    assert wait_until(lambda: next(counter) >= 3 and "ready", timeout=5, what="x") == "ready"
    assert next(counter) == 4  # polled four times, then returned
    assert time.monotonic() - started < 1


def test_wait_until_fails_naming_what_and_the_last_value_seen() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: NotYet({"left": 2}), timeout=0.2, what="both runs ended")
    assert str(failed.value) == "both runs ended: not so within 0.2 s (last seen: {'left': 2})"
    assert 0.2 <= time.monotonic() - started < 1


def test_wait_until_takes_listed_exceptions_as_not_yet_and_raises_others() -> None:
    calls = itertools.count()

    def flaky() -> str:
        if next(calls) < 2:
            raise ConnectionError("not listening")
        return "up"

    assert wait_until(flaky, timeout=5, interval=0, ignoring=(ConnectionError,), what="x") == "up"

    def down() -> bool:
        raise ConnectionError("down")

    with pytest.raises(AssertionError, match=r"last seen: ConnectionError\('down'\)"):
        wait_until(
            down,
            timeout=0.1,
            ignoring=(ConnectionError,),
            what="server up",
        )
    empty: dict[str, int] = {}
    with pytest.raises(KeyError):  # at once, not after the timeout
        wait_until(lambda: empty["missing"], timeout=30, what="x")


def test_wait_until_async_awaits_coroutine_conditions_and_lets_the_loop_run() -> None:
    async def main() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, done.set)

        async def is_done() -> bool:
            return done.is_set()

        assert await wait_until_async(is_done, timeout=5, what="done") is True
        assert await wait_until_async(lambda: [1], timeout=5, what="a list") == [1]
        with pytest.raises(AssertionError, match=r"^never: not so within 0\.1 s"):
            await wait_until_async(lambda: None, timeout=0.1, what="never")

    asyncio.run(main())


def test_stays_true_watches_the_whole_window_and_fails_at_the_first_break() -> None:
    started = time.monotonic()
    stays_true(lambda: True, for_s=0.2, what="calm")
    assert 0.2 <= time.monotonic() - started < 1
    broken_at = time.monotonic() + 0.1
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^calm: stopped holding after 0\.\d\d s of the 5 s"):
        stays_true(lambda: time.monotonic() < broken_at, for_s=5, what="calm")
    assert time.monotonic() - started < 1  # failed at once, not after the window

    async def main() -> None:
        await stays_true_async(lambda: True, for_s=0.1, what="calm")

        async def never() -> NotYet:
            return NotYet("woken")

        with pytest.raises(AssertionError, match=r"\(saw: 'woken'\)"):
            await stays_true_async(never, for_s=5, what="asleep")

    asyncio.run(main())


def test_becomes_true_says_whether_it_turned_true_within_the_window() -> None:
    turns_at = time.monotonic() + 0.05
    assert becomes_true(lambda: time.monotonic() >= turns_at, within=5)
    started = time.monotonic()
    assert not becomes_true(lambda: False, within=0.1)
    assert 0.1 <= time.monotonic() - started < 1

    async def main() -> tuple[bool, bool]:
        async def yes() -> bool:
            return True

        return await becomes_true_async(yes, within=0.1), await becomes_true_async(
            lambda: 0, within=0.1
        )

    assert asyncio.run(main()) == (True, False)
