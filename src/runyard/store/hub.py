"""Wake-ups inside a process, fed by what other processes commit.

The :class:`Hub` wakes coroutines that wait for new work (workers) or for a run to change
(result waiters). It is fed by the process's own writes and by a watcher thread:
PostgreSQL LISTEN/NOTIFY; on SQLite the wake-up sockets of :mod:`.wakebus` (Linux), or
else ``PRAGMA data_version`` polled every millisecond. All are hints only: every waiter
also re-checks on a timeout (the polling backstop of RELIABILITY.md rule 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .tx import RUN, STOP, WAKE, wake_due

if TYPE_CHECKING:
    from .base import Store

log = logging.getLogger("runyard.hub")
#: Announced due times a hub keeps at most (later ones are left to the polling backstop).
MAX_DUES = 10_000
#: How long after an announced due time a hub wakes its workers: a little late rather
#: than early (the item is compared with the database's clock).
DUE_SLACK_S = 0.002
#: How often a SQLite process without a worker checks for commits nobody announced.
QUIET_BACKSTOP_S = 0.5


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; whether it is set. (Python 3.11's
    ``asyncio.wait_for`` can lose a cancellation and hang; ``asyncio.timeout`` cannot.)"""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


class Hub:
    """Events for one asyncio loop; the ``notify_*`` methods may be called from any thread.

    It also remembers which runs it was told of lately, so that whoever knows a run as it
    was at a :meth:`mark` can tell whether it may have changed since (:meth:`changed_since`)
    without reading it: a run just started is waited for without a first read. That
    takes a hub told of every run's changes (:meth:`hear_runs`): a worker's process is
    told only of runs stopped, until something in it waits for runs."""

    #: Runs remembered before the memory starts over (then every mark before it counts
    #: as "changed": a read, as without it).
    RECENT = 4096

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._wake = asyncio.Event()
        self._runs: dict[str, set[asyncio.Event]] = {}
        self._listeners: list[Callable[[str | None], None]] = []
        self._seq = 0  # notifications handled in the loop so far
        self._told: dict[str, int] = {}  # run id -> _seq at its latest notification
        self._forgot = 0  # _seq when _told last started over, or at the last notify_all
        self._hearing = False  # told of every run's changes (else of runs stopped only)
        self._dues: list[float] = []  # heap of the times work was announced due at
        self._timer: asyncio.TimerHandle | None = None  # for the earliest of them
        self._timer_at = 0.0
        self._came_due = False  # a time announced came since take_came_due() last asked

    # -- from any thread ---------------------------------------------------------------

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            fn(*args)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def notify_wake(self, at: float | None = None) -> None:
        """New work may be due now, or at ``at`` (epoch seconds): then :meth:`wait_wake`
        returns at that time, so that a sleep or a delayed run is taken when it is due,
        not when the polling backstop next looks."""
        self._call(self._set_wake, at)

    def _set_wake(self, at: float | None) -> None:
        if at is None or at <= time.time():
            self._wake.set()
            return
        if len(self._dues) < MAX_DUES:
            heapq.heappush(self._dues, at)
            self._arm()

    def _arm(self) -> None:
        """Wake for the dues that have come; a timer for the next one."""
        now = time.time()
        while self._dues and self._dues[0] <= now:
            heapq.heappop(self._dues)
            self._came_due = True
            self._wake.set()
        if not self._dues or (self._timer is not None and self._timer_at <= self._dues[0]):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = self._dues[0]
        self._timer = self.loop.call_later(self._timer_at - now + DUE_SLACK_S, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._arm()

    def notify_run(self, run_id: str) -> None:
        self._call(self._set_run, run_id)

    def notify_runs(self, run_ids: list[str]) -> None:
        """:meth:`notify_run` for several runs, in one hop to the loop."""
        self._call(self._set_runs, run_ids)

    def notify_all(self) -> None:
        """Something changed, no telling what (a poll saw a commit, a listener reconnected)."""
        self._call(self._set_all)

    def hear_runs(self) -> None:
        """From now on this hub is told of every run's changes: :meth:`notify_all`, and
        :meth:`changed_since` may answer "no" for marks from now on."""
        self._call(self._set_hearing)

    def _set_hearing(self) -> None:
        self._hearing = True
        self._set_all()

    def _set_run(self, run_id: str) -> None:
        self._seq += 1
        if len(self._told) >= self.RECENT:
            self._told.clear()
            self._forgot = self._seq
        self._told[run_id] = self._seq
        for ev in self._runs.get(run_id, ()):
            ev.set()
        for listener in self._listeners:
            listener(run_id)

    def _set_runs(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            self._set_run(run_id)

    def _set_all(self) -> None:
        self._seq += 1
        self._told.clear()
        self._forgot = self._seq
        self._wake.set()
        for events in self._runs.values():
            for ev in events:
                ev.set()
        for listener in self._listeners:
            listener(None)

    def add_run_listener(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(run_id)`` when a run changes (``None``: any run may have)."""
        self._listeners.append(listener)

    def remove_run_listener(self, listener: Callable[[str | None], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- in the loop -------------------------------------------------------------------

    def mark(self) -> int:
        """A point in this hub's notifications, for :meth:`changed_since`."""
        return self._seq

    def changed_since(self, run_id: str, mark: int) -> bool:
        """Whether ``run_id`` may have changed after ``mark``: the hub handled a
        notification about it, or about anything, since, or no longer remembers. A
        notification still on its way to the loop is not counted: register the run's
        :meth:`run_event` before asking, and it sets the event when it arrives."""
        return not self._hearing or self._forgot > mark or self._told.get(run_id, 0) > mark

    @property
    def has_run_waiters(self) -> bool:
        return bool(self._runs)

    def take_came_due(self) -> bool:
        """Whether work announced for a later time came due since the last call (a
        worker then readies its parked items with its next claim)."""
        came, self._came_due = self._came_due, False
        return came

    async def wait_wake(self, timeout: float) -> bool:
        """Wait until new work may be due (True) or ``timeout`` seconds passed (False)."""
        woken = await wait_event(self._wake, timeout)
        self._wake.clear()
        return woken

    def run_event(self, run_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._runs.setdefault(run_id, set()).add(ev)
        return ev

    def drop_run_event(self, run_id: str, ev: asyncio.Event) -> None:
        events = self._runs.get(run_id)
        if events is not None:
            events.discard(ev)
            if not events:
                del self._runs[run_id]


class Notified(Protocol):
    """What a :class:`Watcher` tells: a :class:`Hub`, or every hub of a process."""

    def notify_wake(self, at: float | None = None) -> None: ...
    def notify_run(self, run_id: str) -> None: ...
    def notify_runs(self, run_ids: list[str]) -> None: ...
    def notify_all(self) -> None: ...
    def hear_runs(self) -> None: ...


class Source(Protocol):
    """What tells a process of other processes' commits (``Store.change_source``): the
    SQLite wake bus's :class:`~.wakebus.Listener`, or the
    :class:`~.postgres.Notifications` of a listening connection."""

    #: Whether it tells of every run's changes now (else only of runs stopped).
    hears_runs: bool
    #: Set once it can tell nothing more (its connection was lost): the watcher opens
    #: another.
    lost: bool

    def fileno(self) -> int: ...
    def receive(self, timeout: float) -> list[tuple[str, str]]: ...
    def keep_marker(self) -> None: ...
    def want_work(self) -> None:
        """Called from any thread (under the watcher's lock) once new work is wanted."""

    def subscribe(self, *, work: bool, runs: bool) -> None:
        """Called by the watcher's thread (under its lock): tell of new work too if
        ``work``, of every run's changes too if ``runs``."""

    def close(self) -> None: ...


class CommitCounter(Protocol):
    """A number that changes whenever another connection commits (SQLite's
    ``data_version``): how commits nobody announced are noticed."""

    def read(self) -> int: ...
    def close(self) -> None: ...


class Watcher:
    """A thread that turns other processes' commits into :class:`Hub` notifications.

    The wake-up socket (SQLite on Linux) or the listening connection (PostgreSQL) is
    read by an event loop itself once one is attached (:meth:`attach`): a message then
    wakes that loop directly instead of this thread, which would wake the loop in turn
    (measured on PostgreSQL: 0.1-0.15 ms of a worker's wake-up and of a waiter's). The
    thread keeps the polling backstop, LISTENs when asked to, and reads again whenever
    no open loop does."""

    def __init__(
        self, store: Store, hub: Notified, *, poll_s: float = 0.001, backstop_s: float = 0.05
    ) -> None:
        self.store = store
        self.hub = hub
        self.poll_s = poll_s
        self.backstop_s = backstop_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="runyard-watch", daemon=True)
        self._lock = threading.Lock()  # who reads the socket: the thread or _reader
        self._wanted: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.AbstractEventLoop | None = None
        self._listener: Source | None = None
        self._heard = False
        self._work = False  # told of new work too: a worker runs in this process
        self._runs = False  # told of every run's changes: something here waits for runs
        self.hears_runs = False  # ... and listening for them

    def want_work(self) -> None:
        """Also hear of new work from other processes (a worker runs in this process);
        until then only of runs, so that a process without a worker is not woken by
        every run started. (Work announced before the change is found by the worker's
        first claim; PostgreSQL starts listening within a tenth of a second, then
        everyone looks once.)"""
        if self._work:
            return  # (asked before: no wait for the lock, which a reading thread holds)
        with self._lock:
            self._work = True
            if self._listener is not None:
                self._listener.want_work()

    def want_runs(self) -> None:
        """Also hear of every run's changes (something in this process waits for runs);
        until then only of runs stopped (canceled, paused), which the workers' executions
        must act on, so that a worker's process is not woken by every run that ends.
        PostgreSQL starts listening within a tenth of a second, then everyone looks
        once; the SQLite wake bus tells every process of every run."""
        self._runs = True  # (a flag the thread reads: no lock, which a reading thread holds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._reader and self._listener is not None:
                # Stopped from the loop that reads the socket: it cannot wait on itself.
                with self._lock:
                    self._reader.remove_reader(self._listener.fileno())
                    self._reader = None
        self._thread.join(timeout=5)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let ``loop`` read the wake-ups (PostgreSQL, SQLite on Linux; otherwise
        nothing), unless another open loop already does."""
        if not self.store.precise_wakeups:
            return
        with self._lock:
            if self._reader is None or self._reader.is_closed():
                self._wanted = loop

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                # (Read once: what the source is made to hear. A want_*() after this
                # read is subscribed to by _listen, which compares with these.)
                work, runs = self._work, self._runs
                source = self.store.change_source(work=work, runs=runs)
                if source is None:
                    self._poll()
                else:
                    self._listen(source, work=work, runs=runs)
            except Exception as exc:
                log.warning("change watcher lost its connection (%s); reconnecting", exc)
                self.hub.notify_all()
                self._stop.wait(0.5)

    def _poll(self) -> None:
        """Nothing tells of other processes' commits: look for them every ``poll_s``."""
        counter = self.store.commit_counter()
        if counter is None:
            raise RuntimeError("the store offers neither wake-ups nor a commit counter")
        try:
            self._hearing_runs()
            last = counter.read()
            while not self._stop.is_set():
                time.sleep(self.poll_s)
                version = counter.read()
                if version != last:
                    last = version
                    self.hub.notify_all()
        finally:
            counter.close()

    def _listen(self, source: Source, *, work: bool, runs: bool) -> None:
        """What ``source`` tells (read by this thread, or by an attached loop), subscribed
        to more once asked (within a tenth of a second). Where the store counts commits
        (SQLite), a commit announced by nobody (a process that cannot reach this one's
        socket, e.g. in another network namespace) is still noticed, through the counter
        every ``backstop_s``, when no wake-up came for two checks. A process without a
        worker is not told of new work, so that a commit that only announced work is
        unheard there: it checks every :data:`QUIET_BACKSTOP_S` instead, so that a burst
        of new runs elsewhere makes it look about once a second rather than twenty
        times."""
        with self._lock:
            self._listener = source
            if self._work:
                source.want_work()
        counter = self.store.commit_counter()
        try:
            # Anything sent while we were not listening is lost: make everyone re-check.
            self.hears_runs = False
            if source.hears_runs:
                self._hearing_runs()
            else:
                self.hub.notify_all()
            # What the source was made to hear, not the flags read again: a want_work()
            # or want_runs() that came while change_source() connected would otherwise
            # count as done, and the source would never LISTEN for it (a worker then
            # heard of new work only at its polls; a waiter, of runs never).
            runs = runs or source.hears_runs
            last = counter.read() if counter is not None else 0
            self._heard = unheard = False
            check_at = time.monotonic() + self._backstop()
            while not self._stop.is_set():
                new_work, new_runs = self._work and not work, self._runs and not runs
                if new_work or new_runs:
                    with self._lock:  # (not while a loop reads the source)
                        source.subscribe(work=new_work, runs=new_runs)
                        # (What arrived meanwhile waits in the source, unseen by a loop
                        # waiting for its socket.)
                        self._dispatch(source.receive(0))
                    work, runs = work or new_work, runs or new_runs
                    if new_runs and source.hears_runs:
                        self._hearing_runs()  # (everyone looks once: workers too)
                    else:
                        self.hub.notify_wake()
                if source.lost:
                    raise ConnectionError("the source of wake-ups was lost")
                wait = 0.1
                if counter is not None:
                    wait = min(wait, max(0.0, check_at - time.monotonic()))
                if self._reading_in_loop(source):
                    self._stop.wait(wait)
                    source.keep_marker()
                else:
                    with self._lock:
                        self._dispatch(source.receive(wait))
                if counter is not None and time.monotonic() >= check_at:
                    # A commit nobody announced: wake everyone, once it has gone unheard
                    # for a whole period (its announcement may still be on its way to
                    # the loop that reads the socket).
                    version = counter.read()
                    if self._heard or version == last:
                        last, unheard = version, False
                    elif unheard:
                        self.hub.notify_all()
                        last, unheard = version, False
                    else:
                        unheard = True
                    self._heard = False
                    check_at = time.monotonic() + self._backstop()
        finally:
            if counter is not None:
                counter.close()
            self._close_listener(source)

    def _backstop(self) -> float:
        return self.backstop_s if self._work else max(self.backstop_s, QUIET_BACKSTOP_S)

    def _dispatch(self, messages: list[tuple[str, str]]) -> None:
        runs: list[str] = []
        for channel, payload in messages:
            self._heard = True
            if channel in (RUN, STOP):
                runs.extend(payload.split())  # (PostgreSQL: several, see the notify query)
            elif channel == WAKE:
                self.hub.notify_wake(wake_due(payload))
            else:
                self.hub.notify_all()
        if runs:
            self.hub.notify_runs(runs)

    def _reading_in_loop(self, listener: Source) -> bool:
        """Whether an open loop reads the socket; hands it to a newly attached one."""
        with self._lock:
            if self._reader is not None and self._reader.is_closed():
                self._reader = None  # its reader went with it
            if self._reader is None and self._wanted is not None:
                loop, self._wanted = self._wanted, None
                try:
                    loop.call_soon_threadsafe(self._add_reader, loop, listener)
                    self._reader = loop
                except RuntimeError:
                    pass  # closed meanwhile
            return self._reader is not None

    def _add_reader(self, loop: asyncio.AbstractEventLoop, listener: Source) -> None:
        def readable() -> None:
            with self._lock:
                self._dispatch(listener.receive(0))
                if listener.lost:
                    loop.remove_reader(listener.fileno())  # the thread reconnects

        with self._lock:
            if self._reader is loop and not self._stop.is_set():
                loop.add_reader(listener.fileno(), readable)

    def _close_listener(self, listener: Source) -> None:
        """Close the socket, first taking it out of the loop that reads it, if any (which
        then reads the next one, if the thread goes on)."""
        with self._lock:
            loop, self._reader = self._reader, None
            if self._wanted is None and loop is not None and not self._stop.is_set():
                self._wanted = loop
        if loop is None or loop.is_closed():
            listener.close()
            return
        removed = threading.Event()

        def remove() -> None:
            loop.remove_reader(listener.fileno())
            listener.close()
            removed.set()

        try:
            loop.call_soon_threadsafe(remove)
        except RuntimeError:  # closed meanwhile
            listener.close()
            return
        if not removed.wait(1.0) and loop.is_closed():
            listener.close()  # the loop closed first; otherwise it closes it when it runs

    def _hearing_runs(self) -> None:
        """Listening as wanted from now on: everyone looks once (anything committed
        before may have been missed)."""
        self.hears_runs = True
        self.hub.hear_runs()
