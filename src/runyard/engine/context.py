"""``ctx``: what a workflow can do durably.

Every durable operation (step, sleep, wait, emit, charge, map, sync.save, patched) takes
the next *position* of the item's history. On replay the recorded operation at that
position answers instead of running again; an operation of another name or kind there
means the code between steps was not deterministic, and the run fails with an error
naming both.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .registry import FlowControl, RetryPolicy
from .signals import Canceled

if TYPE_CHECKING:
    from .executor import Execution

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EventResult:
    """What a wait for an event returned: which event, its data, or a timeout."""

    event_id: str | None
    data: Any
    timed_out: bool


class RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose lines are stored with the run and go to the process's logging
    (the worker's console), each once: a line the workflow logs again while it replays
    what it recorded before (after a sleep, a wait, a retry, a new worker) was stored and
    shown by the execution that logged it first, so neither happens again."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(logging.getLogger(f"runyard.run.{execution.workflow.name}"), {})
        self._execution = execution

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._execution.replaying:
            return
        text = spelt_out(_line(msg, args, kwargs))
        self._execution.store_log(logging.getLevelName(level), text)
        # The console shows the stored text (a traceback asked for is in it already).
        super().log(level, "%s", text)


def spelt_out(text: str) -> str:
    """``text`` with what no database stores as text, nor every console shows, spelt
    out: NUL as ``\\x00``, a lone surrogate as ``\\udc80``. (A log line never fails, nor
    makes the writes committed with it fail.)"""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _line(msg: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The stored text of a log call, as a handler would format it: the message with its
    arguments (a mismatch is noted, never raised into the workflow, as logging itself
    reports it instead of raising), then the traceback ``exc_info`` asks for."""
    # A single mapping argument fills %(name)s placeholders, as in logging.LogRecord.
    fill: Any = args[0] if len(args) == 1 and isinstance(args[0], Mapping) and args[0] else args
    try:
        text = str(msg) % fill if args else str(msg)
    except (TypeError, ValueError, KeyError) as exc:
        text = f"{msg} (with arguments {args!r}: {exc})"
    exc_info = kwargs.get("exc_info")
    if exc_info:
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        elif not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
        if exc_info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()
    return text


class SyncState:
    """Incremental sync: ``state`` is what the previous iteration saved."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    @property
    def state(self) -> Any:
        return self._execution.sync_state

    @property
    def max_results(self) -> int | None:
        return self._execution.claimed.max_results

    @property
    def incremental(self) -> bool:
        return self._execution.claimed.sync_mode == "incremental"

    async def save(self, state: Any) -> None:
        """Save ``state`` for the next iteration (durably, once)."""
        await self._execution.save_sync(state)


class Context:
    """The handle a workflow gets as its first argument."""

    def __init__(self, execution: Execution) -> None:
        self._x = execution
        self.sync = SyncState(execution)
        self.logger: logging.LoggerAdapter = RunLogger(execution)  # type: ignore[type-arg]

    @property
    def run_id(self) -> str:
        return self._x.fence.run_id

    @property
    def item(self) -> int:
        """Index of the input this execution handles (0 for a single-input run)."""
        return self._x.fence.idx

    @property
    def attempt(self) -> int:
        """How many times this item has been started (1 on the first execution)."""
        return self._x.claimed.attempt

    @property
    def iteration(self) -> int:
        return self._x.claimed.iteration

    @property
    def custom_data(self) -> Any:
        return self._x.claimed.custom_data

    @property
    def workflow(self) -> str:
        return self._x.workflow.name

    @property
    def replaying(self) -> bool:
        """True while recorded operations are being replayed."""
        return self._x.replaying

    def trace_headers(self, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """``headers`` with the W3C ``traceparent`` (and ``tracestate``) of the run's
        trace (of the step attempt, inside one) when tracing is on, unless they name their
        own: send them on to carry the trace into the services the workflow calls."""
        trace = self._x.trace
        return dict(headers or {}) if trace is None else trace.headers(headers or {})

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int | RetryPolicy | None = None,
        timeout: float | None = None,
        flow_control: FlowControl | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once, checkpointing its (JSON) result.

        Failures are retried with exponential backoff and jitter (``retries`` defaults to
        the workflow's); :class:`~runyard.NonRetryableError` stops at once and
        :class:`~runyard.RateLimited` waits its ``retry_after`` without spending a retry
        (up to ``RetryPolicy.max_rate_limited_attempts`` times). ``timeout`` bounds each
        attempt; ``flow_control`` throttles calls to one upstream across every run."""
        return await self._x.step(name, fn, args, kwargs, retries, timeout, flow_control)

    async def sleep(self, name: str, seconds: float) -> None:
        """Sleep durably: the worker is free meanwhile, and a restart does not reset it."""
        await self._x.sleep(name, seconds=seconds)

    async def sleep_until(self, name: str, when: datetime | float) -> None:
        at = when.timestamp() if isinstance(when, datetime) else float(when)
        await self._x.sleep(name, until=at)

    async def wait_for_event(
        self,
        name: str,
        event_id: str | None = None,
        *,
        event_ids: Iterable[str] | None = None,
        timeout: float | None = None,
        lookback: float | None = None,
    ) -> EventResult:
        """Wait (durably) for the first of the events; events notified up to ``lookback``
        seconds before the wait began count too. After ``timeout`` seconds the result says
        ``timed_out``."""
        ids = [event_id] if event_id is not None else []
        ids += list(event_ids or [])
        return await self._x.wait_for_event(name, ids, timeout, lookback)

    async def emit(self, data: Any, *, key: str | None = None) -> bool:
        """Publish an output record; with ``key``, a record already emitted under that key
        (in any iteration of the run) is not emitted again.

        ``max_results`` is enforced: once the run's iteration has stored that many
        outputs, an emit stores nothing and returns False (the run is then marked
        ``truncated``, shown in the run object); the workflow may stop fetching. True
        otherwise. A replay returns what the first execution got (see docs/runs.md)."""
        return await self._x.emit(data, key)

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        await self._x.progress(fraction, message)

    async def charge(self, action: str, amount: float) -> None:
        """Record usage; counted once, however often the run is replayed."""
        await self._x.charge(action, amount)

    async def map(
        self,
        name: str,
        fn: Callable[[Any], Any],
        elements: Iterable[Any],
        *,
        concurrency: int = 4,
        retries: int | RetryPolicy | None = None,
    ) -> list[Any]:
        """Apply ``fn`` to each element, at most ``concurrency`` at once. Each element is
        an item in the run's queue and its result is checkpointed."""
        return await self._x.map(name, fn, list(elements), concurrency, retries)

    def patched(self, change: str) -> bool:
        """True on code paths that include ``change``; False while replaying a run that
        was recorded before it (so a deploy can branch without stranding old runs)."""
        return self._x.patched(change)


class SyncContext:
    """The context of a plain ``def`` workflow, which runs in a thread: the same
    operations, blocking."""

    def __init__(self, ctx: Context, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self.sync = _SyncSyncState(self)
        self.logger = ctx.logger

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        x = self._ctx._x
        if x.cancel_requested:
            coro.close()
            raise Canceled()
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        x.thread_futures.add(fut)
        try:
            return fut.result()
        except asyncio.CancelledError:
            raise Canceled() from None
        finally:
            x.thread_futures.discard(fut)

    run_id = property(lambda self: self._ctx.run_id)
    item = property(lambda self: self._ctx.item)
    attempt = property(lambda self: self._ctx.attempt)
    iteration = property(lambda self: self._ctx.iteration)
    custom_data = property(lambda self: self._ctx.custom_data)
    workflow = property(lambda self: self._ctx.workflow)
    replaying = property(lambda self: self._ctx.replaying)

    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._call(self._ctx.step(name, fn, *args, **kwargs))

    def sleep(self, name: str, seconds: float) -> None:
        self._call(self._ctx.sleep(name, seconds))

    def sleep_until(self, name: str, when: datetime | float) -> None:
        self._call(self._ctx.sleep_until(name, when))

    def wait_for_event(self, name: str, event_id: str | None = None, **kw: Any) -> EventResult:
        return self._call(self._ctx.wait_for_event(name, event_id, **kw))

    def emit(self, data: Any, *, key: str | None = None) -> bool:
        """See :meth:`Context.emit`: False once ``max_results`` is reached."""
        return self._call(self._ctx.emit(data, key=key))

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self._call(self._ctx.progress(fraction, message))

    def charge(self, action: str, amount: float) -> None:
        self._call(self._ctx.charge(action, amount))

    def map(self, name: str, fn: Callable[[Any], Any], elements: Iterable[Any], **kw: Any) -> Any:
        return self._call(self._ctx.map(name, fn, elements, **kw))

    def patched(self, change: str) -> bool:
        return self._ctx.patched(change)


class _SyncSyncState:
    def __init__(self, owner: SyncContext) -> None:
        self._owner = owner

    @property
    def state(self) -> Any:
        return self._owner._ctx.sync.state

    @property
    def max_results(self) -> int | None:
        return self._owner._ctx.sync.max_results

    def save(self, state: Any) -> None:
        self._owner._call(self._owner._ctx.sync.save(state))
