"""One database thread per process, committing concurrent writes together.

Every write of a process goes through :class:`DbExecutor`: a job is a function of a
:class:`~runyard.store.base.Tx`. The thread takes every job waiting and runs them in one
transaction (group commit): sixteen executions that each finish a step pay for one
commit, and each still waits for its own write to be durable before going on. If the
group fails, each job is run again alone, so one bad job never fails another.

Within a group, jobs run in the order of their ``order`` key (a run id), so two groups
that touch the same runs lock them in the same order and cannot deadlock. On PostgreSQL
several threads, each with its own connection, share the queue: while one waits for a
commit another sends the next group. SQLite has one writer at a time, so one thread.

Transient errors (a lost connection, a deadlock, a busy SQLite file) are retried on a
fresh connection for ``retry_for_s``; after that the job fails with
:class:`~runyard.errors.StoreUnavailable` (the API answers 503, never 500).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import StoreUnavailable
from .base import Store

T = TypeVar("T")
log = logging.getLogger("runyard.store")
MAX_GROUP = 256


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    write: bool
    future: Future[Any]
    order: str


class _Conn(threading.local):
    conn: Any = None


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
        self._local = _Conn()
        count = threads if threads is not None else (1 if store.needs_polling else 2)
        self._threads = [
            threading.Thread(target=self._main, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, count))
        ]
        self._started = False
        self._lock = threading.Lock()
        self._closed = False

    def _ensure_started(self) -> None:
        if not self._started:
            with self._lock:
                if not self._started:
                    for t in self._threads:
                        t.start()
                    self._started = True

    def submit(self, write: bool, fn: Callable[..., T], *args: Any, order: str = "") -> Future[T]:
        if self._closed:
            raise RuntimeError("the database executor is closed")
        self._ensure_started()
        fut: Future[T] = Future()
        self._queue.put(_Job(fn, args, write, fut, order))
        return fut

    async def write(self, fn: Callable[..., T], *args: Any, order: str = "") -> T:
        """Run ``fn(tx, *args)`` in a write transaction (possibly shared with others);
        ``order`` (a run id) orders it within the shared transaction."""
        return await asyncio.wrap_future(self.submit(True, fn, *args, order=order))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(False, fn, *args))

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(True, fn, *args).result()

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(False, fn, *args).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            for _ in self._threads:
                self._queue.put(None)
            for t in self._threads:
                t.join(timeout=10)

    # -- the thread ------------------------------------------------------------------

    def _main(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while len(batch) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                writes = sorted(
                    (j for j in batch if j.write and j.future.set_running_or_notify_cancel()),
                    key=lambda j: j.order,
                )
                reads = [
                    j for j in batch if not j.write and j.future.set_running_or_notify_cancel()
                ]
                if writes:
                    self._run_group(writes)
                for j in reads:
                    self._run_one(j)
                if stop:
                    return
        finally:
            self._drop_connection()

    def _connection(self) -> Any:
        if self._local.conn is None:
            self._local.conn = self.store.connect()
        return self._local.conn

    def _drop_connection(self) -> None:
        if self._local.conn is not None:
            self.store.close_connection(self._local.conn)
            self._local.conn = None

    def _run_group(self, jobs: list[_Job]) -> None:
        if len(jobs) == 1:
            self._run_one(jobs[0])
            return
        # Checkpoints of several executions go to the store in one call, which a backend
        # may turn into one statement (PostgreSQL does).
        cps = [j for j in jobs if j.fn == self.store.checkpoint_txn]
        try:
            conn = self._connection()
            results: dict[int, Any] = {}
            with self.store.transaction(conn, write=True) as tx:
                if len(cps) > 1:
                    merged = self.store.checkpoint_many_txn(tx, [j.args for j in cps])
                    results.update((id(j), r) for j, r in zip(cps, merged, strict=True))
                for j in jobs:
                    if id(j) not in results:
                        results[id(j)] = j.fn(tx, *j.args)
        except BaseException as exc:
            # Run each job alone: one bad job must not fail the others.
            if self.store.is_transient(exc):
                self._drop_connection()
            for j in jobs:
                self._run_one(j)
            return
        for j in jobs:
            j.future.set_result(results[id(j)])

    def _run_one(self, job: _Job) -> None:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.02
        while True:
            try:
                conn = self._connection()
                with self.store.transaction(conn, write=job.write) as tx:
                    result = job.fn(tx, *job.args)
            except BaseException as exc:
                if self.store.is_transient(exc):
                    self._drop_connection()
                    if time.monotonic() < deadline:
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
            job.future.set_result(result)
            return
