"""Wake-ups between processes: what another process commits reaches this one's waiters,
and says what changed (new work; which run), on both backends. On SQLite that is the
wake-up socket bus of ``runyard.store.wakebus``, tested here on its own as well."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runyard import RunStatus, Runyard
from runyard.store import open_store, wakebus
from runyard.store.hub import Hub, Watcher, wait_event
from runyard.store.tx import RUN, RUN_END, WAKE
from tests.apps.e2e_support import spawn, wait_registered

from ..conftest import PG_ADMIN_URL, WorkerProcess, make_yard, running_worker
from ..waiting import (
    NotYet,
    becomes_true_async,
    stays_true,
    stays_true_async,
    wait_until,
    wait_until_async,
)


def _child(body: str) -> str:
    """A script for another process: a yard on the database ``argv[1]`` with the workflow
    ``wake_probe`` (no worker runs it), then ``body``."""
    prologue = """
    import sys
    from runyard import Runyard

    yard = Runyard(database_url=sys.argv[1])

    @yard.workflow(name="wake_probe")
    async def wake_probe(ctx, x: int) -> int:
        return x

    """
    return textwrap.dedent(prologue) + textwrap.dedent(body)


CHILD = _child(
    """
    yard.sync.start("wake_probe", 1, run_id=sys.argv[2])  # (no worker here runs it)
    yard.sync.cancel(sys.argv[2])
    yard.close()
    """
)


async def _quiet(event: asyncio.Event, what: str, for_s: float = 0.3) -> None:
    """Clear ``event`` until it stays unset for ``for_s`` s on end (a watcher that starts
    listening wakes everyone, once or, on a slow moment, again)."""

    async def stays_clear() -> bool:
        event.clear()
        return not await becomes_true_async(event.is_set, within=for_s)

    await wait_until_async(stays_clear, timeout=10, what=f"{what} quiet for {for_s} s")


def test_another_process_wakes_exactly_who_it_concerns(db_url: str) -> None:
    """A run started and then canceled by another process: the waiter of that run fires;
    the waiter of another run does not (a watcher that only knew "something was
    committed" would wake everyone); and the new run wakes this process's workers once
    one runs here, not before (a process without a worker is not woken by new work)."""
    asyncio.run(_wakes_exactly(db_url))


async def _wakes_exactly(db_url: str) -> None:
    yard = make_yard(db_url)
    try:
        hub = yard.hub()
        other = "wake-other-1"
        ev_other = hub.run_event(other)
        # The watcher wakes everyone once when it starts listening; wait that out.
        await wait_event(ev_other, 5.0)
        await _quiet(ev_other, "the unrelated run's waiter")
        await hub.wait_wake(0)

        async def started_elsewhere(target: str) -> bool:
            """Whether the run's waiter was woken (asserted) and workers were."""
            ev_target = hub.run_event(target)
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, db_url, target)
            assert await proc.wait() == 0
            assert await wait_event(ev_target, 5.0), "the canceled run's waiter was not woken"
            woken = await hub.wait_wake(1.0)
            # (Whatever else the other process's commits make this one do comes within
            # moments: a wrong wake-up of everyone would too.)
            await stays_true_async(
                lambda: not ev_other.is_set(), for_s=0.3, what="the unrelated run's waiter asleep"
            )
            return woken

        assert not await started_elsewhere("wake-target-1"), "woken for work without a worker"
        yard.hub(work=True)  # as a worker starting here does
        # PostgreSQL LISTENs for work within a tenth of a second, then wakes the workers
        # once; the SQLite wake bus is told at once (the marker is renamed in the call).
        if not yard.store.needs_polling:
            assert await hub.wait_wake(5.0), "no wake-up once listening for work"
        await hub.wait_wake(0)
        assert await started_elsewhere("wake-target-2"), "the new run did not wake the workers"
    finally:
        await yard.aclose()


CHILD_MANY = _child(
    """
    for i in range(int(sys.argv[3])):
        yard.sync.start("wake_probe", i, run_id=f"{sys.argv[2]}{i}", delay=3600)
    yard.sync.cancel(prefix=sys.argv[2])  # one transaction announces them all
    yard.close()
    """
)


def test_runs_announced_together_each_wake_their_own_waiter(db_url: str) -> None:
    """Another process cancels 70 runs in one transaction: the waiter of each is woken
    (on PostgreSQL the announcements travel several runs to a notification, 32 at most),
    and the waiter of a run that was not among them is not."""
    asyncio.run(_announced_together(db_url))


async def _announced_together(db_url: str) -> None:
    yard = make_yard(db_url)
    try:
        hub = yard.hub()
        prefix, count = "wake-many-", 70
        events = {f"{prefix}{i}": hub.run_event(f"{prefix}{i}") for i in range(count)}
        ev_other = hub.run_event("wake-other-2")
        await wait_event(ev_other, 5.0)  # the watcher's first wake-up of everyone
        await _quiet(ev_other, "the unrelated run's waiter")
        for ev in events.values():
            ev.clear()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD_MANY, db_url, prefix, str(count)
        )
        assert await proc.wait() == 0
        for run_id, ev in events.items():
            assert await wait_event(ev, 5.0), f"the waiter of {run_id} was not woken"
        await stays_true_async(
            lambda: not ev_other.is_set(), for_s=0.3, what="the unrelated run's waiter asleep"
        )
    finally:
        await yard.aclose()


def test_a_run_of_several_inputs_is_announced_when_it_ends_not_per_input(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    """A worker process finishes a run's inputs 0 s, 1.5 s and 3 s after they start: a
    waiter of the run in this process is woken when the run ends, and on PostgreSQL not
    by an input that leaves the run going (the worker announces without waiting to learn
    whether the run ended; the database decides when it sends the announcement)."""
    asyncio.run(_announced_when_it_ends(db_url, tmp_path, worker_procs))


async def _announced_when_it_ends(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess]
) -> None:
    yard = make_yard(db_url)
    try:
        spawn(worker_procs, "waits", db_url, tmp_path, concurrency=4)
        await wait_registered(yard, ["staggered"])
        hub = yard.hub()
        ev = hub.run_event("staggered-1")
        await wait_event(ev, 5.0)  # the watcher's first wake-up of everyone
        h = await yard.start("staggered", inputs=[0.0, 1.5, 3.0], run_id="staggered-1")

        def states(*expected: str) -> Callable[[], Awaitable[bool]]:
            async def are() -> bool:
                return [i.state for i in await yard.items(h.id)] == list(expected)

            return are

        await wait_until_async(
            states("completed", "processing", "processing"),
            timeout=10,
            what="input 0 finished, 1 and 2 going",
        )
        assert (await h.status()) is RunStatus.RUNNING
        ev.clear()
        await wait_until_async(
            states("completed", "completed", "processing"),
            timeout=10,
            what="input 1 finished, 2 going",
        )
        if yard.store.backend == "postgres":
            # (SQLite's watcher wakes everyone after a commit nobody announced, which
            # an input that leaves the run going is, as is a lease extension.) Watched
            # past input 1's end: its announcement would have come within moments.
            await stays_true_async(
                lambda: not ev.is_set(), for_s=0.5, what="the run's waiter asleep while it goes"
            )
        ev.clear()
        while True:
            assert await wait_event(ev, 10.0), "the run's end was not announced"
            ev.clear()
            status = await h.status()
            if status is RunStatus.SUCCEEDED or yard.store.backend == "postgres":
                break  # (on PostgreSQL the next wake-up is the end's)
        assert status is RunStatus.SUCCEEDED
    finally:
        await yard.aclose()


def test_a_run_just_started_is_awaited_without_reading_it_first(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for a run this process just started needs one read, once it has ended: the
    hub was marked before the run was written and heard nothing of it since, so the run
    is as written. A run that ended before anyone waited is not missed either, with the
    polling backstop far beyond the test's timeout: the hub heard of it, so it is read."""
    asyncio.run(_awaited_without_a_first_read(db_url, tmp_path, worker_procs, monkeypatch))


async def _awaited_without_a_first_read(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess], mp: pytest.MonkeyPatch
) -> None:
    yard = make_yard(db_url, poll_s=60.0)  # no polling backstop within the test
    reads: list[tuple[str, str]] = []
    real = yard.store.get_run

    def counted(tx: Any, run_id: str) -> Any:
        row = real(tx, run_id)
        reads.append((run_id, row.status.value))
        return row

    heard_at: dict[str | None, list[float]] = {}  # when the hub heard of a run (None: all)

    async def end_heard(run_id: str) -> bool:
        """Whether the run has ended and the hub heard of it since (what it hears is
        announced after the commit that set ``finished_at``)."""
        run = await yard.db.read(real, run_id)  # (not counted)
        heard = heard_at.get(run_id, []) + heard_at.get(None, [])
        return run.finished_at is not None and any(t > run.finished_at for t in heard)

    mp.setattr(yard.store, "get_run", counted)
    try:
        spawn(worker_procs, "waits", db_url, tmp_path, concurrency=4)
        await wait_registered(yard, ["staggered"])
        await wait_event(yard.hub().run_event("-"), 5.0)  # the watcher's first "anything"
        yard.hub().add_run_listener(lambda r: heard_at.setdefault(r, []).append(time.time()))
        for i in range(5):
            h = await yard.start("staggered", 0.0, run_id=f"fresh-{i}")
            assert await h.result(timeout=10) == 0.0
        # (The first read of each came once it had ended, not right after the start.)
        firsts = {run_id: status for run_id, status in reversed(reads)}
        assert firsts == {f"fresh-{i}": "SUCCEEDED" for i in range(5)}
        # Ended before anyone waited for it: the hub heard of it, so it is read.
        h = await yard.start("staggered", 0.0, run_id="ended-first")
        await wait_until_async(
            lambda: end_heard("ended-first"), timeout=10, what="the hub heard ended-first end"
        )
        reads.clear()
        assert await h.result(timeout=10) == 0.0
        assert reads == [("ended-first", "SUCCEEDED")]
        # A hub told "anything may have changed" (a watcher that reconnected) reads first.
        h = await yard.start("staggered", 0.5, run_id="after-anything")
        yard.hub().notify_all()
        reads.clear()
        assert await h.result(timeout=10) == 0.5
        assert reads[0][1] in ("QUEUED", "RUNNING") and reads[-1][1] == "SUCCEEDED"
    finally:
        await yard.aclose()


def test_what_a_transaction_announces_reaches_the_hub_after_its_commit(db_url: str) -> None:
    """Each shape of announcement a write makes is heard by the hub, through the
    database's own channel (a write of this process is heard as another's would be):
    work alone; one run; work and a run together; 40 runs (two notifications on
    PostgreSQL); a run announced "if it has ended", which PostgreSQL sends only for the
    run that has (SQLite sends both: a harmless look)."""
    asyncio.run(_announcement_shapes(db_url))


async def _announcement_shapes(db_url: str) -> None:
    yard = make_yard(db_url, poll_s=60.0)

    @yard.workflow(name="ann_probe")
    async def ann_probe(ctx: Any, x: int) -> int:
        return x

    heard: list[str | None] = []
    try:
        await yard.start("ann_probe", 1, run_id="ann-open", delay=3600)
        await yard.start("ann_probe", 1, run_id="ann-ended", delay=3600)
        await yard.cancel("ann-ended")
        hub = yard.hub(work=True)  # (as a worker's: told of new work too)
        hub.add_run_listener(heard.append)
        first = hub.run_event("-")
        await wait_event(first, 5.0)  # the watcher's first "anything"
        await _quiet(first, "the hub")
        await hub.wait_wake(0)
        sentinel = "ann-sentinel"

        async def announce(*items: tuple[str, str]) -> tuple[bool, list[str | None]]:
            heard.clear()

            def txn(tx: Any) -> None:
                for channel, payload in items:
                    if channel == WAKE:
                        tx.announce_wake()
                    elif channel == RUN:
                        tx.announce_run(payload)
                    else:
                        tx.announce_run_end(payload)

            await yard.db.write(txn)
            # Then one more run, announced by a transaction of its own: announcements
            # arrive in the order of their commits, so once it has, so has everything
            # the first transaction announced.
            await yard.db.write(lambda tx: tx.announce_run(sentinel))
            await wait_until_async(
                lambda: sentinel in heard, timeout=5, what="the announcements heard"
            )
            woken = await hub.wait_wake(0)
            return woken, sorted((r for r in heard if r != sentinel), key=str)

        assert await announce((WAKE, "")) == (True, [])
        assert await announce((RUN, "ann-1")) == (False, ["ann-1"])
        assert await announce((WAKE, ""), (RUN, "ann-2")) == (True, ["ann-2"])
        many = [f"ann-many-{i:02d}" for i in range(40)]
        assert await announce(*((RUN, r) for r in many)) == (False, many)
        woken, runs = await announce((RUN_END, "ann-open"), (RUN_END, "ann-ended"))
        expected = ["ann-ended"] if yard.store.backend == "postgres" else ["ann-ended", "ann-open"]
        assert (woken, runs) == (False, expected)
    finally:
        await yard.aclose()


def test_a_hub_told_of_work_due_later_wakes_its_workers_then(tmp_path: Path) -> None:
    """Due times wake the hub's workers when they come, the earliest first, however they
    were announced; a transaction announces one wake-up, for its earliest time."""

    async def main() -> None:
        hub = Hub(asyncio.get_running_loop())
        t0 = time.time()
        hub.notify_wake(t0 + 0.4)
        hub.notify_wake(t0 + 0.2)
        hub.notify_wake(t0 - 5)  # past: now
        assert await hub.wait_wake(0.1)
        assert await hub.wait_wake(1.0)
        assert 0.2 <= time.time() - t0 < 0.35
        assert await hub.wait_wake(1.0)
        assert 0.4 <= time.time() - t0 < 0.55
        assert not await hub.wait_wake(0.2)

    asyncio.run(main())

    store = open_store(f"sqlite:///{tmp_path / 'tx.db'}")
    conn = store.connect()
    try:
        with store.transaction(conn, write=False) as tx:
            later = time.time() + 60
            tx.announce_wake(later + 10)
            tx.announce_wake(later)
            tx.announce_wake(later + 20)
            tx.announce_run("r")
            assert tx.announcements == {(WAKE, f"{later:.3f}"), (RUN, "r")}
            tx.announce_wake()
            tx.announce_wake(later)
            assert tx.announcements == {(WAKE, ""), (RUN, "r")}
    finally:
        conn.close()


def test_a_hub_remembers_which_runs_changed_since_a_mark_or_says_it_cannot_tell() -> None:
    async def main() -> None:
        hub = Hub(asyncio.get_running_loop())
        # Not (yet) told of every run's changes (a worker's process): it cannot tell.
        assert hub.changed_since("mine", hub.mark())
        hub.hear_runs()
        mark = hub.mark()
        hub.notify_run("other")
        assert not hub.changed_since("mine", mark) and hub.changed_since("other", mark)
        later = hub.mark()
        assert not hub.changed_since("other", later)
        hub.notify_runs([f"r{i}" for i in range(Hub.RECENT)])  # more than it remembers
        assert hub.changed_since("mine", mark) and hub.changed_since("mine", later)
        last = hub.mark()
        hub.notify_all()
        assert hub.changed_since("mine", last)
        assert not hub.changed_since("mine", hub.mark())

    asyncio.run(main())


# -- the SQLite wake-up bus itself ---------------------------------------------------------

needs_linux = pytest.mark.skipif(not wakebus.supported(), reason="abstract sockets: Linux")


def _drain(listener: wakebus.Listener, want: int, timeout: float = 5.0) -> list[tuple[str, str]]:
    """What ``listener`` receives until it has ``want`` messages (each read waits up to
    50 ms for more)."""
    got: list[tuple[str, str]] = []

    def enough() -> bool | NotYet:
        got.extend(listener.receive(0.05))
        return len(got) >= want or NotYet(list(got))

    wait_until(enough, timeout=timeout, interval=0, what=f"{want} messages received")
    return got


def _silent(listener: wakebus.Listener, what: str, for_s: float = 0.3) -> None:
    """``listener`` receives nothing more for ``for_s`` s."""

    def nothing() -> bool | NotYet:
        got = listener.receive(0.05)
        return not got or NotYet(got)

    stays_true(nothing, for_s=for_s, interval=0, what=what)


@needs_linux
def test_bus_delivers_to_every_listener_and_forgets_the_dead(tmp_path: Path) -> None:
    """Runs reach every listener, new work only those that asked for it (a process with a
    worker), from the first message after one asks; dead markers are removed."""
    directory = str(tmp_path / "db.sqlite.wake")
    a, b = wakebus.Listener(directory), wakebus.Listener(directory)
    a.want_work()
    pub = wakebus.Publisher(directory)
    try:
        pub.publish([(WAKE, ""), (RUN, "run-1")])
        assert sorted(_drain(a, 2)) == [(RUN, "run-1"), (WAKE, "")]
        assert _drain(b, 1) == [(RUN, "run-1")]
        _silent(b, "no new work for a listener that did not ask for it")
        pub.publish([(WAKE, "")])
        assert _drain(a, 1) == [(WAKE, "")]
        b.want_work()
        pub.publish([(WAKE, "")])
        assert _drain(b, 1) == [(WAKE, "")]
        assert _drain(a, 1) == [(WAKE, "")]
        # A marker nobody listens behind (its process was SIGKILLed) is removed; a closed
        # listener removed its own.
        dead = tmp_path / "db.sqlite.wake" / "12345-0123456789abcdef"
        dead.touch()
        b.close()
        assert not os.path.exists(b.marker)
        pub.publish([(RUN, "run-2")])
        assert _drain(a, 1) == [(RUN, "run-2")]
        assert not dead.exists()
        assert sorted(os.listdir(directory)) == [a.token + wakebus.WORK_SUFFIX]
    finally:
        pub.close()
        a.close()
        b.close()


@needs_linux
def test_bus_listener_that_fell_behind_is_told_anything_may_have_changed(
    tmp_path: Path,
) -> None:
    directory = str(tmp_path / "w")
    slow = wakebus.Listener(directory)
    pub = wakebus.Publisher(directory)
    try:
        pub.publish([(RUN, "first")])
        assert _drain(slow, 1) == [(RUN, "first")]
        # Not read for a while: the socket buffers fill and messages are dropped.
        big = [(RUN, f"run-{i:06d}-" + "x" * 200) for i in range(200)]
        for _ in range(200):
            pub.publish(big)
        pub.publish([(RUN, "after")])
        got: list[tuple[str, str]] = []

        def told_anything() -> bool:
            got.extend(slow.receive(0.05))
            pub.publish([(RUN, "later")])  # what brings the "anything" once there is room
            return (wakebus.ANY, "") in got

        wait_until(told_anything, timeout=10, interval=0, what='an "anything may have changed"')
    finally:
        pub.close()
        slow.close()


@needs_linux
def test_bus_marker_comes_back_and_foreign_bytes_are_ignored(tmp_path: Path) -> None:
    directory = str(tmp_path / "w")
    listener = wakebus.Listener(directory)
    try:
        os.unlink(listener.marker)

        def marker_back() -> bool:
            listener.receive(0.1)
            return os.path.exists(listener.marker)

        wait_until(marker_back, timeout=5, interval=0, what="the marker written again")
        # Someone else's bytes on the socket are no announcement.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect("\0runyard-wake-" + listener.token)
            s.sendall(b"hello\nW\n")
        assert _drain(listener, 1) == [(WAKE, "")]
    finally:
        listener.close()


class _Recorder:
    """Stands in for a process's hubs: records which thread delivered each wake-up."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self.alls = 0

    def notify_run(self, run_id: str) -> None:
        self.got.append((run_id, threading.current_thread().name))

    def notify_runs(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            self.notify_run(run_id)

    def notify_wake(self, at: float | None = None) -> None:
        pass

    def notify_all(self) -> None:
        self.alls += 1

    def hear_runs(self) -> None:
        self.alls += 1


def _announce(db_url: str, run_id: str, *, stop: bool = False) -> None:
    """Commit a transaction announcing ``run_id`` from a connection of its own."""
    store = open_store(db_url)
    conn = store.connect()
    try:
        with store.transaction(conn, write=True) as tx:
            tx.announce_run(run_id, stop=stop)
    finally:
        store.close_connection(conn)
        store.close()


def _thread_of(rec: _Recorder, run_id: str) -> str | None:
    """The thread that delivered the wake-up for ``run_id``, if one has."""
    return next((thread for rid, thread in rec.got if rid == run_id), None)


def _delivered(rec: _Recorder, run_id: str, timeout: float = 5.0) -> str:
    return wait_until(
        lambda: _thread_of(rec, run_id),
        timeout=timeout,
        interval=0.005,
        what=f"a wake-up for {run_id}",
    )


async def _read_in_loop(rec: _Recorder, db_url: str, prefix: str, timeout: float = 5.0) -> None:
    """Announce the runs ``prefix-0``, ``prefix-1``... until the wake-up of one is read by
    this loop's own thread (the watcher hands its socket or connection over to a loop
    just attached within a tenth of a second; one reconnecting waits half a second)."""
    count = itertools.count()

    async def one_read_in_loop() -> bool:
        run_id = f"{prefix}-{next(count)}"
        await asyncio.to_thread(_announce, db_url, run_id)
        return await becomes_true_async(
            lambda: (run_id, "MainThread") in rec.got, within=0.5, interval=0.01
        )

    await wait_until_async(
        one_read_in_loop, timeout=timeout, interval=0, what=f"a wake-up of {prefix}-* read here"
    )


def _listening(rec: _Recorder) -> None:
    """Until the watcher listens (it then has everyone look once)."""
    wait_until(lambda: rec.alls > 0, timeout=5, interval=0.01, what="the watcher listening")


def test_an_attached_loop_reads_the_wake_ups_itself_and_the_thread_takes_over_after(
    db_url: str,
) -> None:
    """Once a loop is attached, a wake-up (SQLite's socket, PostgreSQL's notification) is
    read by that loop's own thread (no hop through the watcher thread); when the loop
    closes, the watcher thread reads again."""
    store = open_store(db_url)
    rec = _Recorder()
    watcher = Watcher(store, rec)
    watcher.want_runs()
    watcher.start()
    sqlite = store.backend == "sqlite"

    async def in_loop() -> None:
        watcher.attach(asyncio.get_running_loop())
        await _read_in_loop(rec, db_url, "in-loop")

    try:
        _listening(rec)
        asyncio.run(in_loop())
        _announce(db_url, "after-loop")  # the loop is closed now
        assert _delivered(rec, "after-loop") == "runyard-watch"
    finally:
        watcher.stop()
        store.close()
    if sqlite:
        assert os.listdir(store.wake_dir) == []  # type: ignore[attr-defined]  # marker gone


def test_a_lost_listening_connection_read_by_a_loop_is_replaced(pg_db_url: str) -> None:
    """PostgreSQL (SQLite has no connection to lose): the listening connection killed
    while a loop reads it: the watcher connects again, everyone looks once, and the loop
    reads the new connection's notifications."""
    store = open_store(pg_db_url)
    rec = _Recorder()
    watcher = Watcher(store, rec)
    watcher.want_runs()
    watcher.start()
    dbname = pg_db_url.rsplit("/", 1)[1]

    def kill_listener() -> int:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            return len(
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = 'runyard-listen'",
                    (dbname,),
                ).fetchall()
            )

    async def main() -> None:
        watcher.attach(asyncio.get_running_loop())
        await _read_in_loop(rec, pg_db_url, "before")
        alls = rec.alls
        assert await asyncio.to_thread(kill_listener) == 1
        # Reconnected within 5 s (the thread waits 0.5 s first).
        await _read_in_loop(rec, pg_db_url, "after", timeout=12.5)
        assert rec.alls > alls  # everyone looked once (what was sent meanwhile is lost)

    try:
        asyncio.run(main())
    finally:
        watcher.stop()
        store.close()


def test_runs_wanted_while_the_watcher_connects_are_listened_for(db_url: str) -> None:
    """want_runs() (a waiter in this process) called while the watcher makes its source,
    after it read what to hear: the source still subscribes to every run's changes.
    Before, the watcher took the flag it read afterwards as done, and on PostgreSQL the
    source never listened for runs (the hub never heard of them; the same for want_work:
    a worker heard of other processes' work only at its polls)."""
    store = open_store(db_url)
    rec = _Recorder()
    watcher = Watcher(store, rec)
    real = store.change_source

    def connecting(*, work: bool, runs: bool) -> Any:
        source = real(work=work, runs=runs)
        watcher.want_runs()  # (asked while the watcher connected)
        return source

    store.change_source = connecting  # type: ignore[method-assign]
    watcher.start()
    try:
        # (Listening, then hearing runs: everyone looks each time; SQLite hears at once.)
        sqlite = store.backend == "sqlite"
        wait_until(lambda: rec.alls >= (1 if sqlite else 2), timeout=5, what="runs heard")
        _announce(db_url, "wanted-late")
        assert _delivered(rec, "wanted-late") == "runyard-watch"
    finally:
        watcher.stop()
        store.close()


@needs_linux
def test_a_commit_nobody_announced_still_wakes_everyone(tmp_path: Path) -> None:
    """SQLite: a commit that sent no wake-up (a process that cannot reach the sockets) is
    noticed through ``data_version`` and wakes everyone, whether the thread or a loop reads
    the socket; an announced one does not make everyone look."""
    url = f"sqlite:///{tmp_path / 'quiet.db'}"
    store = open_store(url)
    store.upgrade()
    rec = _Recorder()
    watcher = Watcher(store, rec)
    watcher.start()

    def quiet_commit() -> None:
        raw = sqlite3.connect(str(tmp_path / "quiet.db"), isolation_level=None)
        raw.execute("UPDATE runyard_migrations SET applied_at = applied_at + 1")
        raw.close()

    async def in_loop() -> None:
        watcher.attach(asyncio.get_running_loop())
        await _read_in_loop(rec, url, "announced")  # (the loop reads the socket now)
        before = rec.alls
        await stays_true_async(
            lambda: rec.alls == before,
            for_s=0.5,
            interval=0.01,
            what="nobody made to look by an announced commit",
        )
        await asyncio.to_thread(quiet_commit)
        await wait_until_async(
            lambda: rec.alls > before,
            timeout=2.0,
            interval=0.01,
            what="everyone looking after a commit nobody announced, read by a loop",
        )

    try:
        _listening(rec)  # (past the wake-everyone of a watcher that starts listening)
        before = rec.alls
        quiet_commit()
        wait_until(
            lambda: rec.alls > before,
            timeout=2.0,
            interval=0.01,
            what="everyone looking after a commit nobody announced, read by the thread",
        )
        asyncio.run(in_loop())
    finally:
        watcher.stop()
        store.close()


def test_a_workers_process_hears_of_runs_stopped_and_of_every_run_once_it_waits(
    db_url: str,
) -> None:
    """A worker's loops take a hub that needs to hear only of runs stopped (canceled,
    paused: its executions must act on them): on PostgreSQL its process is then not
    woken by every run that changes elsewhere (most often: ends), until something in it
    waits for runs; from then on it hears of every run, and its hub can tell which
    changed since a mark. SQLite's wake bus tells every process of every run."""
    asyncio.run(_hears_of_runs(db_url))


async def _hears_of_runs(db_url: str) -> None:
    yard = make_yard(db_url)
    try:
        hub = yard.hub(work=True, runs=False)
        heard: list[str | None] = []
        hub.add_run_listener(heard.append)

        async def heard_of(run_id: str, stop: bool = False) -> bool:
            await asyncio.to_thread(_announce, db_url, run_id, stop=stop)
            return await becomes_true_async(lambda: run_id in heard, within=0.5, interval=0.01)

        sqlite = db_url.startswith("sqlite")
        # A run stopped elsewhere is heard of (once the watcher listens: announced again
        # until then).
        stopped = (f"stopped-{i}" for i in itertools.count())
        await wait_until_async(
            lambda: heard_of(next(stopped), stop=True),
            timeout=5,
            interval=0,
            what="a run stopped elsewhere heard of",
        )
        assert await heard_of("changed-1") == sqlite, heard
        assert hub.changed_since("changed-1", hub.mark()) != sqlite  # PostgreSQL: cannot tell
        yard.hub()  # something here waits for runs
        await wait_until_async(  # (PostgreSQL listens within a tenth of a second)
            lambda: not hub.changed_since("changed-1", hub.mark()),
            timeout=1.5,
            interval=0.01,
            what="the hub hearing of every run",
        )
        mark = hub.mark()
        assert not hub.changed_since("changed-2", mark)
        assert await heard_of("changed-2")
        assert hub.changed_since("changed-2", mark) and not hub.changed_since("other", mark)
    finally:
        await yard.aclose()


async def _listening_for_work(yard: Runyard, workflow: str) -> None:
    """Until the yard's in-process worker listens for work: it has published ``workflow``
    (after it made its hub, which starts the watcher listening for work) and the watcher,
    asked here to hear of runs too, does (so it has made every LISTEN it was asked for)."""
    await wait_until_async(
        lambda: yard.db.read(yard.store.get_workflow, workflow),
        timeout=10,
        what=f"{workflow} published by the worker",
    )
    hub = yard.hub()
    await wait_until_async(
        lambda: not hub.changed_since("-", hub.mark()),
        timeout=15,  # (a readiness wait, not a timing: a loaded machine took over 5 s)
        interval=0.01,
        what="the watcher listening",
    )


CHILD_DELAYED = _child(
    """
    yard.sync.start("wake_probe", 7, run_id=sys.argv[2], delay=float(sys.argv[3]))
    yard.close()
    """
)


def test_work_announced_for_later_is_taken_when_due_not_at_the_next_poll(db_url: str) -> None:
    """A worker whose polling backstop is 5 s takes a sleep that ends in 1 s, and a run
    another process started with a 1 s delay, when they are due: the hand-back and the
    trigger announce when (before, both waited for the next poll: up to 5 s late)."""
    asyncio.run(_taken_when_due(db_url))


async def _taken_when_due(db_url: str) -> None:
    yard = make_yard(db_url, poll_s=5.0)

    @yard.workflow(name="wake_probe")
    async def wake_probe(ctx: Any, x: int) -> int:
        return x

    @yard.workflow(name="naps")
    async def naps(ctx: Any, seconds: float) -> float:
        await ctx.sleep("nap", seconds)
        return seconds

    try:
        async with running_worker(yard, concurrency=2):
            await _listening_for_work(yard, "naps")
            started = time.monotonic()
            h = await yard.start("naps", 1.0)
            assert await h.result(timeout=10) == 1.0
            assert 1.0 <= time.monotonic() - started < 1.8
            assert [s.status for s in await yard.steps(h.id)] == ["completed"]

            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD_DELAYED, db_url, "delayed-1", "1.0"
            )
            assert await proc.wait() == 0
            run = await yard.wait("delayed-1", timeout=10)
            assert run.status is RunStatus.SUCCEEDED and run.result == 7
            assert run.started_at is not None
            assert 1.0 <= run.started_at - run.created_at < 1.8
    finally:
        await yard.aclose()


def test_work_announced_a_little_early_is_taken_when_due_not_at_the_next_poll(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delayed run whose announced due time is early (the trigger reads its own clock,
    before the database reads its own for the run's: a few ms early on one machine, more
    from a host whose clock runs ahead; here 0.4 s): the worker, woken before the run is
    due, finds nothing to claim, and still takes it when it is due, not at its next poll
    (5 s later: before, the CI flake of the test above; on SQLite the worker's process
    is also woken by its own other connections' commits, which hid it there)."""
    monkeypatch.setattr(
        "runyard.models.NewRun.due_at",
        lambda self: None if not self.delay_s else time.time() + self.delay_s - 0.4,
    )
    asyncio.run(_taken_when_due_though_announced_early(db_url))


async def _taken_when_due_though_announced_early(db_url: str) -> None:
    yard = make_yard(db_url, poll_s=5.0)

    @yard.workflow(name="wake_probe")
    async def wake_probe(ctx: Any, x: int) -> int:
        return x

    try:
        async with running_worker(yard, concurrency=2):
            await _listening_for_work(yard, "wake_probe")
            await yard.start("wake_probe", 7, run_id="early-1", delay=1.0)
            run = await yard.wait("early-1", timeout=10)
            assert run.status is RunStatus.SUCCEEDED and run.result == 7
            assert run.started_at is not None
            assert 1.0 <= run.started_at - run.created_at < 1.8
    finally:
        await yard.aclose()
