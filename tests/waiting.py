"""Waiting in tests: on a condition, never on a guess.

A test that needs something to have happened polls it with :func:`wait_until` (or
:func:`wait_until_async` in a coroutine, where the condition may be a coroutine function
too) instead of sleeping "long enough": it goes on the moment the condition holds, and
when it never does, it fails naming what it waited for and the last value it saw.

A test that must show that something does *not* happen first waits for a positive sign
that the system has passed the point where it would have happened. Where no such sign
exists (a wake-up that must not come, a worker that must not act), it watches for a
bounded time, named as such: :func:`stays_true` / :func:`stays_true_async`. Where either
outcome is expected (one per backend) or a probe is repeated, :func:`becomes_true` /
:func:`becomes_true_async` say whether the condition turned true within a bounded time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar, overload

T = TypeVar("T")

#: How often a condition is polled unless a test asks otherwise.
INTERVAL_S = 0.05
_SHOWN = 2000  # characters of the last value a failure message shows at most


class _Nothing:
    def __repr__(self) -> str:
        return "nothing (never evaluated)"


_NOTHING = _Nothing()


class NotYet:
    """What a condition returns to say "not yet", and what it saw: false, and shown in
    the failure message as what was seen (e.g. the runs still going)."""

    __slots__ = ("seen",)

    def __init__(self, seen: object) -> None:
        self.seen = seen

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return repr(self.seen)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"{what}: not so within {timeout:g} s (last seen: {_shown(last)})")


def _broken(what: str, for_s: float, held_s: float, value: object) -> AssertionError:
    return AssertionError(
        f"{what}: stopped holding after {held_s:.2f} s of the {for_s:g} s watched "
        f"(saw: {_shown(value)})"
    )


def wait_until(
    condition: Callable[[], T | NotYet | None],
    *,
    timeout: float,
    what: str,
    interval: float = INTERVAL_S,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``condition()`` every ``interval`` s until it returns a true value, and return
    that value; after ``timeout`` s fail with an AssertionError naming ``what`` and the
    last value seen (a condition may return :class:`NotYet` to say what it saw). An
    exception of a type in ``ignoring`` counts as "not yet" (e.g. a server not listening
    yet); any other propagates at once (a condition may raise to give up early, e.g.
    when the process it waits for has died)."""
    deadline = time.monotonic() + timeout
    last: object = _NOTHING
    while True:
        try:
            value = condition()
        except ignoring as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        time.sleep(interval)


@overload
async def wait_until_async(
    condition: Callable[[], Awaitable[T | NotYet | None]],
    *,
    timeout: float,
    what: str,
    interval: float = INTERVAL_S,
    ignoring: tuple[type[Exception], ...] = (),
) -> T: ...


@overload
async def wait_until_async(
    condition: Callable[[], T | NotYet | None],
    *,
    timeout: float,
    what: str,
    interval: float = INTERVAL_S,
    ignoring: tuple[type[Exception], ...] = (),
) -> T: ...


async def wait_until_async(
    condition: Callable[[], Awaitable[T | NotYet | None]] | Callable[[], T | NotYet | None],
    *,
    timeout: float,
    what: str,
    interval: float = INTERVAL_S,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """:func:`wait_until` for a coroutine: the event loop runs on between polls, and
    ``condition`` may return an awaitable (a coroutine function), which is awaited."""
    deadline = time.monotonic() + timeout
    last: object = _NOTHING
    while True:
        try:
            value = await _evaluate(condition)
        except ignoring as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        await asyncio.sleep(interval)


def stays_true(
    condition: Callable[[], object],
    *,
    for_s: float,
    what: str,
    interval: float = INTERVAL_S,
) -> None:
    """A bounded observation window: ``condition()`` holds every time it is polled for
    ``for_s`` seconds (from now, and once more at the end), or the test fails at once,
    naming ``what`` and the value that broke it. For a "this does not happen" where the
    system gives no sign that it has passed the point where it would have."""
    started = time.monotonic()
    end = started + for_s
    while True:
        value = condition()
        if not value:
            raise _broken(what, for_s, time.monotonic() - started, value)
        left = end - time.monotonic()
        if left < 0:
            return
        time.sleep(min(interval, left))


async def stays_true_async(
    condition: Callable[[], Awaitable[object]] | Callable[[], object],
    *,
    for_s: float,
    what: str,
    interval: float = INTERVAL_S,
) -> None:
    """:func:`stays_true` for a coroutine (``condition`` may be a coroutine function)."""
    started = time.monotonic()
    end = started + for_s
    while True:
        value = await _evaluate(condition)
        if not value:
            raise _broken(what, for_s, time.monotonic() - started, value)
        left = end - time.monotonic()
        if left < 0:
            return
        await asyncio.sleep(min(interval, left))


def becomes_true(
    condition: Callable[[], object], *, within: float, interval: float = INTERVAL_S
) -> bool:
    """Whether ``condition()`` turns true within ``within`` seconds (polled every
    ``interval`` s, and once more at the end). For an outcome a test expects either way
    (one answer on one backend, the other on the other) or probes again (a retry); a
    test that needs it true uses :func:`wait_until`, one that needs it false
    :func:`stays_true`."""
    end = time.monotonic() + within
    while True:
        if condition():
            return True
        left = end - time.monotonic()
        if left < 0:
            return False
        time.sleep(min(interval, left))


async def becomes_true_async(
    condition: Callable[[], Awaitable[object]] | Callable[[], object],
    *,
    within: float,
    interval: float = INTERVAL_S,
) -> bool:
    """:func:`becomes_true` for a coroutine (``condition`` may be a coroutine function)."""
    end = time.monotonic() + within
    while True:
        if await _evaluate(condition):
            return True
        left = end - time.monotonic()
        if left < 0:
            return False
        await asyncio.sleep(min(interval, left))


async def _evaluate(condition: Callable[[], Awaitable[T]] | Callable[[], T]) -> T:
    value = condition()
    if inspect.isawaitable(value):
        return await value
    return value
