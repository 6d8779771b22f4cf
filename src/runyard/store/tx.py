"""Transactions: named queries run on one cursor, and the pipelining of statements."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .base import Store

Row = Mapping[str, Any]
T = TypeVar("T")
E = TypeVar("E")
#: Announcement channels (PostgreSQL NOTIFY channels; in-process on SQLite).
WAKE = "runyard_wake"
RUN = "runyard_run"
#: A run changed in a way its executions in flight must act on (canceled, paused): heard
#: by workers as well as by those who wait for runs (see ``Runyard.hub``).
STOP = "runyard_stop"
#: RUN, sent only if the run has ended by the time it is sent (PostgreSQL).
RUN_END = "runyard_run_end"


class StoreObserver(Protocol):
    """Told what a store does, for measurement (``runyard bench`` counts statements with
    one): set as the store's ``observer``. Unset (None, the default), it costs one
    attribute check per statement. Called in whichever thread runs the transaction."""

    def statements(self, name: str, count: int) -> None:
        """``count`` executions of the named query ``name`` (``send_many``: one a row)."""

    def transaction(self, write: bool) -> None:
        """A transaction begins (a write transaction if ``write``)."""

    def pipeline_sync(self) -> None:
        """A pipelined write waits for the answers to what it sent so far (PostgreSQL)."""


def _reported(sync: Callable[[], None], observer: StoreObserver) -> Callable[[], None]:
    """``sync``, each call of it told to ``observer``."""

    def reported() -> None:
        observer.pipeline_sync()
        sync()

    return reported


class Sent:
    """A statement sent to the database; its rows are read when asked. On PostgreSQL a
    write transaction is pipelined, so statements sent one after another travel together
    and the first read waits for all of them (one round trip instead of one each)."""

    __slots__ = ("_cur", "_rows", "_sync")

    def __init__(self, cur: Any = None, rows: list[Row] | None = None, sync: Any = None) -> None:
        self._cur = cur
        self._rows = rows
        self._sync = sync

    def _arrived(self) -> Any:
        cur = self._cur  # a psycopg cursor (other backends answer at once)
        if cur.pgresult is None and self._sync is not None:
            self._sync()  # the answer has not arrived yet
        return cur

    def rows(self) -> list[Row]:
        if self._rows is None:
            cur = self._arrived()
            # (pgresult, not description: psycopg builds the description anew each time)
            result = cur.pgresult
            self._rows = list(cur.fetchall()) if result is not None and result.nfields else []
        return self._rows

    @property
    def rowcount(self) -> int:
        return int(self._arrived().rowcount)

    def one(self) -> Row | None:
        rows = self.rows()
        return rows[0] if rows else None


class Later(Generic[T]):
    """A job's answer, read from its statements' rows once every job sharing its
    transaction has sent its own, and the COMMIT is on its way (:func:`settle`): on
    PostgreSQL a group of such jobs and its commit then take one round trip instead of
    one each plus one. Reading may run more queries, outside the transaction then: reads
    only."""

    __slots__ = ("_read", "_value")

    def __init__(self, read: Callable[[], T]) -> None:
        self._read: Callable[[], T] | None = read
        self._value: T | None = None

    def result(self) -> T:
        """What it reads (read once; later calls give the same)."""
        if self._read is not None:
            self._value, self._read = self._read(), None
        return self._value  # type: ignore[return-value]

    def item(self: Later[list[E]], i: int) -> Later[E]:
        """A Later of element ``i`` of this one's list."""
        return Later(lambda: self.result()[i])


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """In place of a job's answer (see :func:`settle`): reading it failed after its
    transaction committed. Its writes stand, so the job must not run again: whoever
    submitted it gets ``error``."""

    error: Exception


def wake_due(payload: str) -> float | None:
    """The time a WAKE announcement names (see :meth:`Tx.announce_wake`); None: now
    (also for a payload that is no time)."""
    try:
        return float(payload) if payload else None
    except ValueError:
        return None


def settle(tx: Tx, values: Sequence[object]) -> list[object]:
    """``values`` (job answers in ``tx``) with every :class:`Later` read, after ``tx``
    was told to commit if there is any. Once ``tx`` committed, a Later that fails to read
    gives a :class:`ReadFailed` in its place and the others are still read: the
    transaction is over, and rerunning a job whose writes were committed (a claim, an
    outcome) would make them twice. Without a commit of its own to make (a read), the
    reads run inside the transaction and a failure fails it, as any job's failure does."""
    if not any(isinstance(v, Later) for v in values):
        return list(values)
    tx.finish()
    if not tx.finished:
        return [v.result() if isinstance(v, Later) else v for v in values]
    return [_read_committed(v) if isinstance(v, Later) else v for v in values]


def _read_committed(later: Later[Any]) -> object:
    try:
        return later.result()
    except Exception as exc:
        return ReadFailed(exc)


class Tx:
    """A cursor inside one transaction, running the backend's named queries."""

    def __init__(
        self,
        store: Store,
        cur: Any,
        conn: Any = None,
        pipeline: Any = None,
        commit: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._cur = cur
        self._conn = conn
        self._pipeline = pipeline
        self._commit = commit
        self._q = store.queries
        #: Told of each statement (see :class:`StoreObserver`); None: nobody is.
        self._observer = observer = store.observer
        #: How a pipelined statement's reader waits for its answer.
        self._sync: Callable[[], None] | None = None
        if pipeline is not None:
            self._sync = pipeline.sync if observer is None else _reported(pipeline.sync, observer)
        self.announcements: set[tuple[str, str]] = set()
        self.finished = False
        self._wake: tuple[str, str] | None = None  # the one WAKE in announcements

    def finish(self) -> None:
        """Commit now and publish the announcements (on PostgreSQL the COMMIT goes with
        every statement not yet answered, in one round trip). What runs in this Tx
        afterwards runs outside the transaction: reads only. Without a commit of its own
        to make (a read, an unpipelined write), the transaction ends as usual when its
        block does."""
        if self.finished or self._commit is None:
            return
        self.finished = True
        self._commit()
        self._pipeline = None  # what follows runs statement by statement

    def announce_wake(self, at: float | None = None) -> None:
        """After commit, tell every worker that new work may be due now, or only at
        ``at`` (epoch seconds: a delayed run's start, a sleep's end), when a worker that
        heard it looks again instead of waiting for its polling backstop. One WAKE goes
        out per transaction, for the earliest time announced."""
        payload = "" if at is None or at <= time.time() else f"{at:.3f}"
        if self._wake is not None:
            if self._wake[1] == "" or (payload and float(self._wake[1]) <= float(payload)):
                return  # what is announced already covers it
            self.announcements.discard(self._wake)
        self._wake = (WAKE, payload)
        self._announce(self._wake)

    def announce_run(self, run_id: str, *, stop: bool = False) -> None:
        """After commit, tell whoever waits on ``run_id`` that it changed; ``stop``: and
        the workers, whose executions of it must stop (a cancel, a pause)."""
        self._announce((STOP if stop else RUN, run_id))

    def announce_run_end(self, run_id: str) -> None:
        """:meth:`announce_run` if ``run_id`` has ended when the announcement is sent, for
        a writer that cannot tell whether its change ended the run without waiting for
        the answer (PostgreSQL only)."""
        self._announce((RUN_END, run_id))

    def _announce(self, item: tuple[str, str]) -> None:
        if self.finished:
            raise RuntimeError("an announcement after the commit would never be sent")
        self.announcements.add(item)

    def send(self, name: str, params: Mapping[str, Any] | None = None) -> Sent:
        """Execute without waiting for the answer where the backend allows it."""
        if self._observer is not None:
            self._observer.statements(name, 1)
        return self._send(name, params)

    def _send(self, name: str, params: Mapping[str, Any] | None) -> Sent:
        if self._pipeline is None:
            return Sent(rows=self._rows(name, params))
        # In pipeline mode each statement needs its own cursor: one cursor would pile
        # the result sets up and answer a later fetch with an earlier statement's rows.
        cur = self._conn.cursor()
        cur.execute(self._q[name], self._store.adapt(params or {}))
        return Sent(cur=cur, sync=self._sync)

    def send_many(self, name: str, params: Sequence[Mapping[str, Any]]) -> None:
        """Execute one statement for each set of parameters (no rows returned)."""
        if params:
            if self._observer is not None:
                self._observer.statements(name, len(params))
            adapt = self._store.adapt
            cur = self._conn.cursor() if self._pipeline is not None else self._cur
            cur.executemany(self._q[name], [adapt(p) for p in params])

    @property
    def cursor(self) -> Any:
        return self._cur

    def q(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        if self._observer is not None:
            self._observer.statements(name, 1)
        if self._pipeline is not None:
            return self._send(name, params).rows()
        return self._rows(name, params)

    def _rows(self, name: str, params: Mapping[str, Any] | None) -> list[Row]:
        cur = self._cur
        cur.execute(self._q[name], self._store.adapt(params or {}))
        return list(cur.fetchall()) if cur.description else []

    def q1(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = self.q(name, params)
        return rows[0] if rows else None

    def exec(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; the number of rows it changed."""
        if self._observer is not None:
            self._observer.statements(name, 1)
        if self._pipeline is not None:
            return self._send(name, params).rowcount
        cur = self._cur
        cur.execute(self._q[name], self._store.adapt(params or {}))
        return int(cur.rowcount)
