"""One writing thread per process, committing concurrent writes together.

Every write of a process goes through :class:`DbExecutor`: a job is a function of a
:class:`~runyard.store.base.Tx`. The thread takes every job waiting and runs them in one
transaction (group commit): sixteen executions that each finish a step pay for one
commit, and each still waits for its own write to be durable before going on. If the
group fails, each job is run again alone, so one bad job never fails another.

Within a group, jobs run in the order of their ``order`` key (a run id), so two groups
that touch the same runs lock them in the same order and cannot deadlock. One thread
writes: every write waiting while it commits goes into its next group, so a process
makes the fewest, largest transactions (on PostgreSQL a transaction costs the server
more than its statements; measured against two writer threads sharing the queue, which
halve the groups: 15 % more HTTP triggers/s, 15 % less database CPU per request). On
PostgreSQL reads have a thread and a connection of their own, so that a slow read (a
list, a usage report) never holds up a commit; SQLite has one connection per process.

Transient errors (a lost connection, a deadlock, a busy SQLite file) are retried on a
fresh connection until the job's deadline, ``retry_for_s`` after it was submitted (or the
:data:`retry_window` of the context it was submitted from: the server's, per request);
after that the job fails with :class:`~runyard.errors.StoreUnavailable` (the API answers
503, never 500). On SQLite the wait for another process's write lock ends at that
deadline too, not at the connection's 30 s busy timeout. A job whose transaction
committed never runs again, whatever fails after the commit: an answer read after it (a
:class:`~runyard.store.tx.Later`) that fails fails that job alone (StoreUnavailable when
the failure is transient), and a read failing in the event loop hands over only the reads
of its pass, not the writes already committed with them.

A job is a function of a transaction and the positional arguments submitted with it
(``db.write(store.cancel_txn, filt)`` runs ``store.cancel_txn(tx, filt)``); mypy checks
the arguments against the function and gives the call the function's answer, a Later's
once read. (The arguments are typed as a ``TypeVarTuple``, not as a ``ParamSpec``: the
executor's own keyword options, ``order=``, ``durable=``, ``inline=``, ``busy_fails=``,
may follow them, which ``*args: P.args, **kwargs: P.kwargs`` forbids. A job's keyword
parameters keep their defaults: a store merges jobs by their argument tuples.)

Claims and lease extensions are written with ``durable=False``: their commit does not
wait for the disk. Losing one in a power cut or an operating-system crash changes nothing
anyone was promised: the item is claimed again from its last checkpoint, which is what
that crash does to every execution anyway; and a later durable commit (a checkpoint, the
outcome) flushes it along, so nothing written after it can outlive it. A worker that
outlives a PostgreSQL crash holding a claim the server forgot is fenced like any other
(owner and epoch no longer match). Accepted runs, checkpoints, outcomes, events and
every client's request stay durable.

A small job (a write about one run, a read of a few rows) submitted from the event loop
while the writing thread is idle runs in the loop itself, on that thread's connection
(taken under a lock: one writer connection per process, RELIABILITY.md rule 8), at the end
of the loop's current pass, together with every other job submitted in that pass: it then
costs no hop to a thread and back (each a wake-up of a sleeping thread, often on an idle
core: on PostgreSQL, with the round trip itself, measured 0.5-1 ms of a 5.3 ms trigger ->
complete p50, and a third more no-op runs/s) but still commits in a group. It never waits
there: if the thread or another connection holds a lock (PostgreSQL: a row lock for more
than :data:`~runyard.store.postgres.INLINE_LOCK_WAIT_MS`), the connection is not open yet,
or anything fails, the jobs go to the thread, which runs them as it runs any (and opens
the connection: never the loop). Jobs of unbounded size always go to the thread, so the
loop is never held up by a scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple, overload

from ..errors import RunyardError, StoreUnavailable
from .base import Store, Tx
from .tx import Later, ReadFailed, settle

R = TypeVar("R")
Ts = TypeVarTuple("Ts")
log = logging.getLogger("runyard.store")
MAX_GROUP = 256
#: ``order`` of a job that comes after every run's writes in a shared transaction: a
#: claim. Its walk may keep the lock of a row it passed over (an item another worker
#: claimed since the walk's snapshot); before the group's outcomes, which wait for their
#: runs' rows, that made a deadlock with the outcome holding the run and waiting for
#: that item. After them, a claim holds nothing an outcome of its group waits for.
LAST = "\U0010ffff"
#: How long a job submitted in this context may take to reach the database before it
#: fails with StoreUnavailable; None: the executor's ``retry_for_s``. The server sets its
#: window for each request, so that a process that also runs a worker (``runyard dev``)
#: answers a client within the server's window while its executions keep their own.
retry_window: ContextVar[float | None] = ContextVar("runyard_retry_window", default=None)


@dataclass(slots=True)
class _Job:
    fn: Callable[..., object]
    args: tuple[object, ...]
    write: bool
    future: Future[Any]
    order: str
    durable: bool
    deadline: float  # time.monotonic(): fail with StoreUnavailable past it
    busy_fails: bool = False


class LockBusy(RunyardError):
    """A write asked not to wait found the database's write lock taken (SQLite)."""

    code = "lock_busy"
    http_status = 503


class _Conn:
    """A thread's connection; the writing thread's is lent to the event loop for the jobs
    it runs itself (under ``_conn_lock``)."""

    conn: Any = None


def _closed(conn: Any) -> bool:
    """Whether ``conn`` was closed or lost (psycopg); sqlite3 connections tell nothing."""
    return bool(getattr(conn, "closed", False))


class DbExecutor:
    """A thread that owns one connection and runs jobs on it."""

    def __init__(
        self,
        store: Store,
        *,
        retry_for_s: float = 30.0,
        threads: int | None = None,
        name: str = "runyard-db",
    ):
        self.store = store
        self.retry_for_s = retry_for_s
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # PostgreSQL by default: a writer and a reader thread, a queue each. Otherwise
        # ``threads`` threads (SQLite: one) share one queue.
        split = threads is None and not store.needs_polling
        self._reads = queue.SimpleQueue() if split else self._queue
        count = threads if threads is not None else 1
        # One thread writes: the loop may borrow its connection.
        self._inline = count == 1
        self._writer = _Conn()
        self._conn_lock = threading.Lock()  # when inline: who uses the writer's connection
        queues = [self._queue, self._reads] if split else [self._queue] * max(1, count)
        self._threads = [
            (
                threading.Thread(
                    target=self._main,
                    args=(q, self._writer if i == 0 else _Conn()),
                    name=f"{name}-{i}",
                    daemon=True,
                ),
                q,
            )
            for i, q in enumerate(queues)
        ]
        self._started = False
        self._lock = threading.Lock()
        self._closed = False
        self._working = False  # the writing thread holds jobs taken off its queue
        self._inline_loop: asyncio.AbstractEventLoop | None = None
        self._inline_jobs: list[_Job] = []
        self._merged = store.merged_writes()

    def _ensure_started(self) -> None:
        if not self._started:
            with self._lock:
                if not self._started:
                    for t, _ in self._threads:
                        t.start()
                    self._started = True

    @overload
    def submit(
        self,
        write: bool,
        fn: Callable[[Tx, *Ts], Later[R]],
        /,
        *args: *Ts,
        order: str = "",
        durable: bool = True,
    ) -> Future[R]: ...

    @overload
    def submit(
        self,
        write: bool,
        fn: Callable[[Tx, *Ts], R | Later[R]],
        /,
        *args: *Ts,
        order: str = "",
        durable: bool = True,
    ) -> Future[R]: ...

    def submit(
        self,
        write: bool,
        fn: Callable[[Tx, *Ts], object],
        /,
        *args: *Ts,
        order: str = "",
        durable: bool = True,
    ) -> Future[Any]:
        """Queue ``fn(tx, *args)`` for the database thread (a write if ``write``); its
        future answers what :meth:`write` or :meth:`read` would."""
        return self._enqueue(write, fn, args, order, durable)

    def _enqueue(
        self,
        write: bool,
        fn: Callable[..., object],
        args: tuple[object, ...],
        order: str,
        durable: bool,
    ) -> Future[Any]:
        if self._closed:
            raise RuntimeError("the database executor is closed")
        self._ensure_started()
        fut: Future[Any] = Future()
        self._put(_Job(fn, args, write, fut, order, durable, self._deadline()))
        return fut

    def _deadline(self) -> float:
        window = retry_window.get()
        return time.monotonic() + (self.retry_for_s if window is None else window)

    def _put(self, job: _Job) -> None:
        (self._queue if job.write else self._reads).put(job)

    @overload
    async def write(
        self,
        fn: Callable[[Tx, *Ts], Later[R]],
        /,
        *args: *Ts,
        order: str = "",
        durable: bool = True,
        inline: bool = True,
        busy_fails: bool = False,
    ) -> R: ...

    @overload
    async def write(
        self,
        fn: Callable[[Tx, *Ts], R | Later[R]],
        /,
        *args: *Ts,
        order: str = "",
        durable: bool = True,
        inline: bool = True,
        busy_fails: bool = False,
    ) -> R: ...

    async def write(
        self,
        fn: Callable[[Tx, *Ts], object],
        /,
        *args: *Ts,
        order: str = "",
        durable: bool = True,
        inline: bool = True,
        busy_fails: bool = False,
    ) -> Any:
        """Run ``fn(tx, *args)`` in a write transaction (possibly shared with others);
        ``order`` (a run id) orders it within the shared transaction. ``durable=False``
        only for writes whose loss in a crash is harmless (see the module's docstring);
        a group with any durable job waits for the disk. ``inline=False`` for a write
        whose size has no bound (a bulk cancel): it never runs in the event loop.
        ``busy_fails``: where it runs in the loop and another process holds the write
        lock, raise :class:`LockBusy` at once instead of queueing for the lock."""
        fut = self._submit_from_loop(True, fn, args, order, durable, inline, busy_fails)
        return await asyncio.wrap_future(fut)

    @overload
    async def read(
        self, fn: Callable[[Tx, *Ts], Later[R]], /, *args: *Ts, inline: bool = False
    ) -> R: ...

    @overload
    async def read(
        self, fn: Callable[[Tx, *Ts], R | Later[R]], /, *args: *Ts, inline: bool = False
    ) -> R: ...

    async def read(
        self, fn: Callable[[Tx, *Ts], object], /, *args: *Ts, inline: bool = False
    ) -> Any:
        """Run ``fn(tx, *args)`` in a read transaction. ``inline=True`` for a read of a
        few rows (a run by id, a key): it may run in the event loop (see the module's
        docstring); a read that may return or scan many rows never does."""
        fut = self._submit_from_loop(False, fn, args, "", True, inline, False)
        return await asyncio.wrap_future(fut)

    def _submit_from_loop(
        self,
        write: bool,
        fn: Callable[..., object],
        args: tuple[object, ...],
        order: str,
        durable: bool,
        inline: bool,
        busy_fails: bool,
    ) -> Future[Any]:
        if (
            inline
            and self._inline
            and not self._closed
            and self._idle()
            and self._writer.conn is not None
        ):
            loop = asyncio.get_running_loop()
            if self._inline_loop is None:
                self._inline_loop = loop
            if loop is self._inline_loop:
                fut: Future[Any] = Future()
                if not self._inline_jobs:
                    loop.call_soon(self._run_inline)
                job = _Job(fn, args, write, fut, order, durable, self._deadline(), busy_fails)
                self._inline_jobs.append(job)
                return fut
        return self._enqueue(write, fn, args, order, durable)

    def _idle(self) -> bool:
        return not self._working and self._queue.empty()

    @overload
    def write_sync(self, fn: Callable[[Tx, *Ts], Later[R]], /, *args: *Ts) -> R: ...

    @overload
    def write_sync(self, fn: Callable[[Tx, *Ts], R | Later[R]], /, *args: *Ts) -> R: ...

    def write_sync(self, fn: Callable[[Tx, *Ts], object], /, *args: *Ts) -> Any:
        """:meth:`write` from a thread that is no event loop's: waits for the answer."""
        return self.submit(True, fn, *args).result()

    @overload
    def read_sync(self, fn: Callable[[Tx, *Ts], Later[R]], /, *args: *Ts) -> R: ...

    @overload
    def read_sync(self, fn: Callable[[Tx, *Ts], R | Later[R]], /, *args: *Ts) -> R: ...

    def read_sync(self, fn: Callable[[Tx, *Ts], object], /, *args: *Ts) -> Any:
        """:meth:`read` from a thread that is no event loop's: waits for the answer."""
        return self.submit(False, fn, *args).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handover()
        if self._started:
            for _, q in self._threads:
                q.put(None)
            for t, _ in self._threads:
                t.join(timeout=10)
        if self._inline:
            with self._conn_lock:
                self._drop_connection(self._writer)

    # -- in the event loop -------------------------------------------------------------

    def _run_inline(self) -> None:
        """Run the jobs submitted in this pass of the loop, unless the thread got busy
        meanwhile, the write lock is taken, or anything fails: then hand them over (the
        writes only if their transaction did not commit)."""
        jobs = self._inline_jobs
        if not jobs:
            return
        if self._closed or not self._idle() or not self._conn_lock.acquire(blocking=False):
            self._handover()
            return
        conn = self._writer.conn
        if conn is None or _closed(conn):  # closed meanwhile: the thread opens it again
            self._conn_lock.release()
            self._handover()
            return
        # (Marked running only once done: on a failure the thread takes them as new.)
        writes, reads = self._split(jobs, start=False)
        answers: dict[int, object] = {}
        try:
            try:
                if writes:
                    durable = any(j.durable for j in writes)
                    with self.store.transaction(
                        conn, write=True, durable=durable, wait=False
                    ) as tx:
                        answers = self._run_jobs(tx, writes)
            except BaseException as exc:
                self._inline_failed(conn, exc, jobs)
                return
            # Committed: the writes are answered whatever the reads do next.
            self._inline_jobs = reads
            self._drop_if_unread(self._writer, answers.values())
            for j in writes:
                if j.future.set_running_or_notify_cancel():
                    self._answer(j, answers[id(j)])
            answers = {}
            try:
                for j in reads:
                    with self.store.transaction(conn, write=False, wait=False) as tx:
                        (answers[id(j)],) = settle(tx, [j.fn(tx, *j.args)])
            except BaseException as exc:
                self._inline_failed(conn, exc, reads)
                return
        finally:
            self._conn_lock.release()
        self._inline_jobs = []
        for j in reads:
            if j.future.set_running_or_notify_cancel():
                self._answer(j, answers[id(j)])

    def _inline_failed(self, conn: Any, exc: BaseException, jobs: list[_Job]) -> None:
        """``jobs`` (nothing of theirs committed) failed in the loop: the thread runs them
        again (alone where one fails, retrying where the database is busy) and reports
        what they raise; those that must not wait for a busy lock fail now."""
        if getattr(conn, "in_transaction", False) or _closed(conn):
            # Left in an unknown state, lost, or closed by the store (a failed pipeline).
            self._drop_connection(self._writer)
        if self.store.is_transient(exc):
            for j in jobs:
                if j.busy_fails and j.future.set_running_or_notify_cancel():
                    j.future.set_exception(LockBusy("the write lock is taken"))
            jobs = [j for j in jobs if not j.busy_fails]
        self._inline_jobs = jobs
        self._handover()

    def _handover(self) -> None:
        """Give the jobs waiting to run in the loop to the thread."""
        jobs, self._inline_jobs = self._inline_jobs, []
        for j in jobs:
            if self._closed:
                if j.future.set_running_or_notify_cancel():
                    j.future.set_exception(RuntimeError("the database executor is closed"))
            else:
                self._ensure_started()
                self._put(j)

    # -- the thread ------------------------------------------------------------------

    def _main(self, jobs: queue.SimpleQueue[_Job | None], holder: _Conn) -> None:
        lent = self._inline and holder is self._writer  # its connection lent to the loop
        try:
            while True:
                job = jobs.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while len(batch) < MAX_GROUP:
                    try:
                        nxt = jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                if lent:
                    self._working = True
                with self._conn_lock if lent else contextlib.nullcontext():
                    writes, reads = self._split(batch)
                    if writes:
                        self._run_group(writes, holder)
                    for j in reads:
                        self._run_one(j, holder)
                if lent:
                    self._working = False
                if stop:
                    return
        finally:
            if lent:
                self._working = False
            self._drop_connection(holder)

    @staticmethod
    def _split(batch: list[_Job], start: bool = True) -> tuple[list[_Job], list[_Job]]:
        """The writes of ``batch`` in their order, and its reads; canceled ones dropped,
        the others marked running when ``start``."""
        if start:
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        else:
            live = [j for j in batch if not j.future.cancelled()]
        writes = sorted((j for j in live if j.write), key=lambda j: j.order)
        return writes, [j for j in live if not j.write]

    def _run_jobs(self, tx: Tx, jobs: list[_Job]) -> dict[int, object]:
        """Run write ``jobs`` in ``tx``; their answers by ``id(job)`` (a
        :class:`ReadFailed` for one whose answer failed to read after the commit). Jobs of
        one function that the store merges (``merged_writes``; on PostgreSQL checkpoints,
        new runs and outcomes, each kind then one statement) go to it in one call."""
        results: dict[int, object] = {}
        for merged in self._merged:
            alike = [j for j in jobs if j.fn == merged.job]
            if len(alike) > 1:
                answers = merged.many(tx, [j.args for j in alike])
                results.update((id(j), answers.item(i)) for i, j in enumerate(alike))
        for j in jobs:
            if id(j) not in results:
                results[id(j)] = j.fn(tx, *j.args)
        return dict(zip(results, settle(tx, list(results.values())), strict=True))

    def _answer(self, job: _Job, answer: object) -> None:
        """Give ``job`` its answer (its future is running)."""
        if isinstance(answer, ReadFailed):
            job.future.set_exception(self._unread(answer.error))
        else:
            job.future.set_result(answer)

    def _unread(self, exc: Exception) -> Exception:
        """What a job whose answer failed to read after its commit raises: ``exc``, or
        StoreUnavailable for a failure a retry would have cured (the API answers 503)."""
        if not self.store.is_transient(exc):
            return exc
        error = StoreUnavailable(f"the write committed, but its answer could not be read: {exc}")
        error.__cause__ = exc
        return error

    def _drop_if_unread(self, holder: _Conn, answers: Iterable[object]) -> None:
        """Replace the connection when an answer failed to read on it after the commit
        for a reason that a new connection cures (or it was closed)."""
        for answer in answers:
            if isinstance(answer, ReadFailed) and (
                self.store.is_transient(answer.error) or _closed(holder.conn)
            ):
                self._drop_connection(holder)
                return

    def _connection(self, holder: _Conn) -> Any:
        if holder.conn is not None and _closed(holder.conn):
            # Lost, or closed by the store after a failed pipeline: never used again.
            self._drop_connection(holder)
        if holder.conn is None:
            holder.conn = self.store.connect()
        return holder.conn

    def _drop_connection(self, holder: _Conn) -> None:
        if holder.conn is not None:
            self.store.close_connection(holder.conn)
            holder.conn = None

    def _run_group(self, jobs: list[_Job], holder: _Conn) -> None:
        if len(jobs) == 1:
            self._run_one(jobs[0], holder)
            return
        try:
            conn = self._connection(holder)
            durable = any(j.durable for j in jobs)
            lock_wait = min(j.deadline for j in jobs) - time.monotonic()
            with self.store.transaction(
                conn, write=True, durable=durable, lock_wait_s=max(0.0, lock_wait)
            ) as tx:
                answers = self._run_jobs(tx, jobs)
        except BaseException as exc:
            # Nothing committed. Run each job alone: one bad job must not fail the others.
            if self.store.is_transient(exc) or _closed(holder.conn):
                self._drop_connection(holder)
            for j in jobs:
                self._run_one(j, holder)
            return
        self._drop_if_unread(holder, answers.values())
        for j in jobs:
            self._answer(j, answers[id(j)])

    def _run_one(self, job: _Job, holder: _Conn) -> None:
        """Run ``job`` alone, retrying transient errors until its deadline (one try at
        least, without waiting for a lock, if the deadline passed while it queued), but
        never once it committed."""
        delay = 0.02
        while True:
            try:
                conn = self._connection(holder)
                lock_wait = max(0.0, job.deadline - time.monotonic())
                with self.store.transaction(
                    conn, write=job.write, durable=job.durable, lock_wait_s=lock_wait
                ) as tx:
                    (answer,) = settle(tx, [job.fn(tx, *job.args)])
            except BaseException as exc:
                if self.store.is_transient(exc) or _closed(holder.conn):
                    self._drop_connection(holder)
                if self.store.is_transient(exc):
                    if time.monotonic() < job.deadline:
                        log.warning("database unavailable (%s); retrying", exc)
                        time.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    job.future.set_exception(
                        StoreUnavailable(f"the database is unavailable: {exc}")
                    )
                    return
                job.future.set_exception(exc)
                return
            self._drop_if_unread(holder, [answer])
            self._answer(job, answer)
            return
