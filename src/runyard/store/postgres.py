"""The PostgreSQL backend (psycopg 3): row claims with ``FOR UPDATE SKIP LOCKED``,
per-key locks for flow control, LISTEN/NOTIFY wake-ups (a hint, never the only path)."""

from __future__ import annotations

import logging
import secrets
import select
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .. import jsonutil
from ..models import ItemState, NewRun
from .base import Checkpoint, Fence, Row, Store, Tx
from .control import existing_run
from .execution import status_after_outcome
from .records import CheckpointWrite, MergedWrite, Outcome
from .tx import RUN, RUN_END, STOP, WAKE, Later, Sent

log = logging.getLogger("runyard.store")
#: Channels announcements are sent on (see the notify query).
WAKE_CHANNEL = WAKE
RUN_CHANNEL = RUN
STOP_CHANNEL = STOP
#: Run ids one notification carries at most (see the ``notify`` query).
PAYLOADS_PER_NOTIFICATION = 32
#: The first key of the workers' session locks (two-key advisory locks; the second key is
#: the worker's ``lock_key``), as the queries spell it.
WORKER_LOCK_SPACE = 1381564416
#: A write transaction to be answered within less than this long bounds its waits for row
#: locks by its window (the server's requests, seconds); a worker's writes (a longer
#: window) wait as ever: their items are fenced, and their leases expire if they stall.
LOCK_TIMEOUT_BELOW_S = 10.0
#: How long a write run in the event loop (``wait=False``, see :mod:`.dbexec`) waits for a
#: row lock before it gives up and is handed to the writing thread, milliseconds.
INLINE_LOCK_WAIT_MS = 2


def conninfo(url: str) -> str:
    """psycopg accepts ``postgresql://`` URLs; ``postgres://`` and SQLAlchemy-style
    ``postgresql+psycopg://`` are normalized."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _checkpoints_json(cps: Sequence[Checkpoint], **each: Any) -> list[dict[str, Any]]:
    """Checkpoints as rows of one JSON parameter (``json_to_recordset``): one parameter
    instead of an array each column, which psycopg adapts at a cost of its own per array
    and statement."""
    return [{**each, "position": cp.position, **cp.step_columns()} for cp in cps]


def _committed(cur: psycopg.Cursor[Any]) -> bool:
    """Whether the COMMIT that ``cur`` sent committed (answered, and not as a ROLLBACK)."""
    result = cur.pgresult
    return result is not None and result.command_status == b"COMMIT"


def _has_side_effects(cps: Sequence[Checkpoint]) -> bool:
    return any(cp.output or cp.credit or cp.sync_state for cp in cps)


class PostgresStore(Store):
    backend = "postgres"
    needs_polling = False
    # (SQLite announces over its wake sockets and sets PRAGMA synchronous itself.)
    own_queries = frozenset(
        {
            "checkpoint_steps_many",
            "finish_items_steps",
            "insert_runs",
            "lock_runs",
            "nested_loops",
            "notify",
            "notify_ended",
            "notify_many",
            "txn_settings",
            "autovacuum_on",
            "vacuum_items",
            "take_worker_lock",
            "unlocked_workers",
            "worker_lock_state",
        }
    )
    claim_starts_runs = True
    session_locks = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._connections: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

    def session_lock(self) -> WorkerLock:
        return WorkerLock(self.url)

    # The two writes every step and every run make, each in one statement instead of
    # several (a statement costs the client more than the server here). Checkpoints with
    # side effects (emit, charge, sync) take the general path.

    def checkpoint_txn(
        self, tx: Tx, f: Fence, iteration: int, cps: Sequence[Checkpoint]
    ) -> Later[str | None]:
        if _has_side_effects(cps):
            return super().checkpoint_txn(tx, f, iteration, cps)
        return self.checkpoint_many_txn(tx, [CheckpointWrite(f, iteration, cps)]).item(0)

    def checkpoint_many_txn(
        self, tx: Tx, writes: Sequence[CheckpointWrite]
    ) -> Later[list[str | None]]:
        if any(_has_side_effects(w.checkpoints) for w in writes):
            return super().checkpoint_many_txn(tx, writes)
        fences = [
            {**w.fence.params(), "position": max(cp.position for cp in w.checkpoints)}
            for w in writes
        ]
        checkpoints = [
            row
            for w in writes
            for row in _checkpoints_json(
                w.checkpoints, run_id=w.fence.run_id, idx=w.fence.idx, iteration=w.iteration
            )
        ]
        tx.send("nested_loops")
        sent = tx.send(
            "checkpoint_steps_many",
            {"fences": jsonutil.dumps(fences), "checkpoints": jsonutil.dumps(checkpoints)},
        )

        def statuses() -> list[str | None]:
            status = {(r["run_id"], r["idx"]): r["status"] for r in sent.rows()}
            return [status.get((w.fence.run_id, w.fence.idx)) for w in writes]

        return Later(statuses)

    def merged_writes(self) -> list[MergedWrite]:
        return [
            MergedWrite(self.checkpoint_txn, self._checkpoint_jobs),
            MergedWrite(self.create_run_txn, self._create_run_jobs),
            MergedWrite(self.complete_item_txn, self._outcome_jobs),
        ]

    def _create_run_jobs(
        self, tx: Tx, jobs: Sequence[tuple[NewRun]]
    ) -> Later[list[tuple[Row, bool]]]:
        return self.create_runs_txn(tx, [run for (run,) in jobs])

    def create_runs_txn(self, tx: Tx, runs: Sequence[NewRun]) -> Later[list[tuple[Row, bool]]]:
        """``create_run_txn`` for each of ``runs``, in one statement."""
        # A run id given twice is inserted once (its first trigger), the second finds it
        # as an idempotent retry would.
        first = {run.id: run for run in reversed(runs)}
        params = [self._new_run_params(run) for run in first.values()]
        for run in first.values():
            if run.flow_limits is not None:
                tx.send("upsert_flow_key", run.flow_limits)
        sent = tx.send(
            "insert_runs",
            {
                "runs": jsonutil.dumps([p.run for p in params]),
                "items": jsonutil.dumps([i for p in params for i in p.items]),
            },
        )
        for run in first.values():
            self._send_callback(tx, run)
            tx.announce_wake(run.due_at())

        def read() -> list[tuple[Row, bool]]:
            created = {row["id"]: row for row in sent.rows()}
            answers = []
            for run in runs:
                row = created.get(run.id)
                new = row is not None and first.get(run.id) is run
                answers.append((row if row is not None else existing_run(tx, run.id), new))
            return answers

        return Later(read)

    def complete_item_txn(
        self,
        tx: Tx,
        f: Fence,
        iteration: int,
        pending: Sequence[Checkpoint],
        state: ItemState,
        result: str | None,
        error: str | None,
        sole: bool = False,
    ) -> str | Later[str | None] | None:
        outcome = Outcome(f, iteration, pending, state, result, error, sole)
        if _has_side_effects(pending):
            return self._outcome_txn(tx, outcome)
        return self.complete_items_txn(tx, [outcome]).item(0)

    def _outcome_jobs(self, tx: Tx, jobs: Sequence[tuple[Any, ...]]) -> Later[list[str | None]]:
        """complete_items_txn of the arguments of ``complete_item_txn`` jobs (``sole``
        may be left out, as it may from a call)."""
        return self.complete_items_txn(tx, [Outcome(*args) for args in jobs])

    def complete_items_txn(self, tx: Tx, outcomes: Sequence[Outcome]) -> Later[list[str | None]]:
        """complete_item_txn for several items."""
        # Every run is locked first, in id order and in a statement of its own, so that
        # the outcome statement's snapshot sees every other item of those runs as
        # committed. Outcomes with side effects (emit, charge, sync) take the general
        # path, after the lock.
        tx.send("lock_runs", {"run_ids": sorted({o.fence.run_id for o in outcomes})})
        plain = [o for o in outcomes if not _has_side_effects(o.pending)]
        general = {
            id(o): self._outcome_txn(tx, o) for o in outcomes if _has_side_effects(o.pending)
        }
        sent = None
        if plain:
            rows = [
                {
                    "n": n,
                    **o.fence.params(),
                    "iteration": o.iteration,
                    "position": o.position,
                    "state": o.state.value,
                    "result": o.result,
                    "error": o.error,
                }
                for n, o in enumerate(plain)
            ]
            checkpoints = [
                row
                for o in plain
                for row in _checkpoints_json(o.pending, run_id=o.fence.run_id, idx=o.fence.idx)
            ]
            tx.send("nested_loops")
            sent = tx.send(
                "finish_items_steps",
                {
                    "outcomes": jsonutil.dumps(rows),
                    "checkpoints": jsonutil.dumps(checkpoints),
                    "probe": len(rows) + 1,
                },
            )
        # The statement ends the runs it finishes the last open input of, and gives those
        # it failed their on_failure item; what follows is announced without waiting for
        # its answer (the transaction then takes one round trip with its commit).
        for o in plain:
            self._after_outcome_txn(tx, o, None, decided=False)

        def statuses() -> list[str | None]:
            rows = {r["n"]: r for r in sent.rows()} if sent else {}
            number = {id(o): n for n, o in enumerate(plain)}
            answers: list[str | None] = []
            for o in outcomes:
                if id(o) in general:
                    answers.append(general[id(o)])
                    continue
                row = rows.get(number[id(o)])
                answers.append(
                    None
                    if row is None
                    else status_after_outcome(row["final_status"], row["run_status"])
                )
            return answers

        return Later(statuses)

    def claim_upkeep(self, tx: Tx) -> bool:
        """Vacuum ``items`` when the server's autovacuum is off (see the query); whether
        it did. Run outside a transaction (a read)."""
        row = tx.q1("autovacuum_on")
        if row is None or row["on"]:
            return False
        tx.cursor.execute(self.queries["vacuum_items"], prepare=False)  # (not preparable)
        return True

    def connect(self) -> psycopg.Connection[Any]:
        # Every query of the store is an index lookup. A table that autovacuum has not
        # analyzed yet (the first minute of a busy database, or after a burst) looks
        # nearly empty to the planner, which then picks sequential scans whose cost grows
        # with the backlog (measured: 230 runs/s instead of 870 with 20,000 queued). So
        # Runyard's own connections steer the planner to the indexes, walked in order: a
        # bitmap scan reads every row that matches and sorts them, where an index scan in
        # the list's order stops after the page (a list of 50 of 20,000 SUCCEEDED runs
        # read all 20,000 without statistics).
        # And no JIT compilation: each query touches a handful of rows, while the
        # planner's estimate of a statement whose table grew (a lease-expiry pass over
        # 100,000 items, estimated at 20,000 rows) crosses jit_above_cost, and the
        # server then compiled it on every run: 60-85 ms for a statement that reads 2
        # buffers, several times a second per worker during a 100,000-run drain.
        conn: psycopg.Connection[Any] = psycopg.connect(
            conninfo(self.url),
            row_factory=dict_row,
            autocommit=True,
            connect_timeout=5,
            application_name="runyard",
            options="-c enable_seqscan=off -c enable_bitmapscan=off -c jit=off",
        )
        self._connections.add(conn)
        return conn

    def own_backend_pids(self) -> set[int]:
        """The server processes of this store's open connections: what they NOTIFY, this
        process's hubs were told already (:attr:`Store.changes`)."""
        return {c.info.backend_pid for c in list(self._connections) if not c.closed}

    @contextmanager
    def transaction(
        self,
        conn: Any,
        *,
        write: bool,
        pipeline: bool = True,
        durable: bool = True,
        wait: bool = True,
        lock_wait_s: float | None = None,
    ) -> Iterator[Tx]:
        if self.observer is not None:
            self.observer.transaction(write)
        if not write or not pipeline:
            try:
                with ExitStack() as stack:
                    # Reads run without BEGIN and COMMIT (two round trips): under READ
                    # COMMITTED every statement takes its own snapshot inside a
                    # transaction too.
                    if write:
                        stack.enter_context(conn.transaction())
                    yield Tx(self, stack.enter_context(conn.cursor()))
            except psycopg.errors.InvalidSqlStatementName:
                conn.close()  # psycopg's prepared statements are not the server's: replace
                raise
            return
        # Writes are pipelined: BEGIN, the statements sent with Tx.send and COMMIT travel
        # together and the transaction waits for answers only where it reads them (one
        # round trip for most). What the transaction announces is sent right after its
        # COMMIT, in the same round trip, as a statement of its own (its own implicit
        # transaction, committed by the pipeline's closing sync): a NOTIFY inside the
        # main transaction would take a database-wide lock through its commit and
        # serialize every writer. BEGIN and COMMIT are sent by hand: psycopg's
        # transaction block waits for each of them in pipeline mode.
        done = False
        try:
            with conn.cursor() as cur, ExitStack() as pipelined:
                pipe = pipelined.enter_context(conn.pipeline())

                def commit() -> None:
                    committing = conn.execute(b"COMMIT")
                    ended = self._publish(tx) if tx.announcements else None
                    try:
                        pipelined.close()  # leaving pipeline mode waits for every answer
                    except psycopg.Error as exc:
                        if not _committed(committing):
                            raise
                        # What failed came after the COMMIT (an announcement, a hint):
                        # the transaction stands, and its jobs must not run again.
                        log.warning("could not send wake-ups (%s); waiters poll", exc)
                        self._abandon(conn)
                        ended = None
                    if tx.announcements:
                        self.changes.committed(self._resolved(tx.announcements, ended))

                conn.execute(b"BEGIN")
                tx = Tx(self, cur, conn, pipe, commit)
                # A request's write waits for a row lock (a run another transaction holds)
                # within its window only, a write in the event loop hardly at all; then
                # it fails as the database being unavailable would (55P03 is an
                # OperationalError: retried, or handed to the thread; then 503).
                lock_ms = None if wait else INLINE_LOCK_WAIT_MS
                if lock_wait_s is not None and lock_wait_s < LOCK_TIMEOUT_BELOW_S:
                    ms = max(1, int(lock_wait_s * 1000))  # (0 would mean no limit)
                    lock_ms = ms if lock_ms is None else min(lock_ms, ms)
                if not durable or lock_ms is not None:
                    tx.send(
                        "txn_settings",
                        {
                            "synchronous_commit": None if durable else "off",
                            "lock_timeout": None if lock_ms is None else str(lock_ms),
                        },
                    )
                yield tx
                tx.finish()
            done = True
        finally:
            if not done:
                self._abandon(conn)  # whatever failed: the connection is replaced

    @staticmethod
    def _publish(tx: Tx) -> Sent | None:
        """Send what ``tx`` announced, after its COMMIT (see the ``notify`` query); the
        answer naming the runs of ``announce_run_end`` that had ended, if any."""
        items = sorted(tx.announcements)
        notes: list[tuple[str, str]] = []
        for channel in (WAKE_CHANNEL, RUN_CHANNEL, STOP_CHANNEL):
            payloads = [p for c, p in items if c == channel]
            for i in range(0, len(payloads), PAYLOADS_PER_NOTIFICATION):
                notes.append((channel, " ".join(payloads[i : i + PAYLOADS_PER_NOTIFICATION])))
        if len(notes) == 1:
            tx.send("notify", {"channel": notes[0][0], "payload": notes[0][1]})
        elif notes:
            tx.send(
                "notify_many",
                {"channels": [c for c, _ in notes], "payloads": [p for _, p in notes]},
            )
        if ended := [p for c, p in items if c == RUN_END]:
            return tx.send("notify_ended", {"run_ids": ended})
        return None

    @staticmethod
    def _resolved(announcements: set[tuple[str, str]], ended: Sent | None) -> set[tuple[str, str]]:
        """``announcements`` as this process's hubs are told them: the runs announced
        "if ended" that had ended (the answer of ``notify_ended``) as plain run changes."""
        if ended is None:
            return announcements
        out = {a for a in announcements if a[0] != RUN_END}
        for row in ended.rows():
            out.update((RUN, run_id) for run_id in (row["run_ids"] or "").split())
        return out

    @staticmethod
    def _abandon(conn: Any) -> None:
        """Close the connection of a failed pipelined write (the next use reconnects;
        closing rolls back). When a statement fails, the server skips those queued
        behind it, and psycopg (3.3) still counts one it meant to prepare as prepared:
        every later use of it on the connection would fail with InvalidSqlStatementName,
        and neither ROLLBACK nor DEALLOCATE ALL sets its cache right."""
        conn.close()

    def adapt(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        return params

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        return isinstance(
            exc,
            psycopg.errors.DeadlockDetected
            | psycopg.errors.SerializationFailure
            | psycopg.errors.AdminShutdown
            | psycopg.errors.CannotConnectNow
            # A prepared statement psycopg thinks exists (see _abandon): a new
            # connection cures it.
            | psycopg.errors.InvalidSqlStatementName,
        )

    def run_script(self, tx: Tx, sql: str) -> None:
        tx.cursor.execute(sql.encode())

    def change_source(self, *, work: bool, runs: bool) -> Notifications:
        conn = self.listen_connection(work=work, runs=runs)
        return Notifications(conn, runs=runs, own=self.own_backend_pids)

    def listen_connection(self, *, work: bool, runs: bool) -> psycopg.Connection[Any]:
        """A connection that listens for runs stopped (canceled, paused), and also for
        new work if ``work``, for every changed run if ``runs``."""
        conn: psycopg.Connection[Any] = psycopg.connect(
            conninfo(self.url),
            autocommit=True,
            connect_timeout=5,
            application_name="runyard-listen",
        )
        conn.execute(f"LISTEN {STOP_CHANNEL}")
        if work:
            self.listen_for_work(conn)
        if runs:
            self.listen_for_runs(conn)
        return conn

    @staticmethod
    def listen_for_work(conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"LISTEN {WAKE_CHANNEL}")

    @staticmethod
    def listen_for_runs(conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"LISTEN {RUN_CHANNEL}")


class Notifications:
    """The notifications of a listening connection, read as the SQLite wake bus's
    :class:`~runyard.store.wakebus.Listener` is: by the watcher thread, or by an event
    loop when :meth:`fileno` is readable (no hop through the thread). A lost connection
    makes :meth:`receive` return nothing and sets :attr:`lost` (the thread reconnects)."""

    def __init__(
        self, conn: psycopg.Connection[Any], *, runs: bool, own: Callable[[], set[int]]
    ) -> None:
        self.conn = conn
        self.lost = False
        self.hears_runs = runs
        self._own = own
        self._fd = conn.fileno()

    def fileno(self) -> int:
        return self._fd

    def receive(self, timeout: float) -> list[tuple[str, str]]:
        """``(channel, payload)`` of what arrived within ``timeout`` seconds (a payload may
        name several runs, separated by spaces: see the notify query)."""
        if self.lost:
            return []
        try:
            notes = list(self.conn.notifies(timeout=timeout))
        except psycopg.Error:
            self.lost = True
            return []
        if not notes:
            return []
        own = self._own()  # (what this process's store sent: its hubs know it already)
        return [(n.channel, n.payload) for n in notes if n.pid not in own]

    def keep_marker(self) -> None:
        """(The wake bus's listeners keep a file; a connection needs nothing.)"""

    def want_work(self) -> None:
        """(The watcher's thread LISTENs for it: :meth:`subscribe`.)"""

    def subscribe(self, *, work: bool, runs: bool) -> None:
        if work:
            PostgresStore.listen_for_work(self.conn)
        if runs:
            PostgresStore.listen_for_runs(self.conn)
            self.hears_runs = True

    def close(self) -> None:
        self.conn.close()


class WorkerLock:
    """A worker's session advisory lock on a connection of its own: while the worker's
    row names the key, the lock being free proves the session ended (the worker died, or
    lost its connection and must take the lock back before it goes on)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key: int | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self, key: int | None = None) -> int | None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                conninfo(self.url),
                autocommit=True,
                connect_timeout=5,
                application_name="runyard-liveness",
                # A connection cut off without a word ends within seconds, not hours.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
                tcp_user_timeout=10000,
            )
        for _ in range(1 if key is not None else 16):
            want = key if key is not None else secrets.randbelow(2**31 - 2) + 1
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (WORKER_LOCK_SPACE, want)
            ).fetchone()
            if row is not None and row[0]:
                self.key = want
                return want
        return None

    def lost(self, timeout: float) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return True
        try:
            # Readable when the server says something (most often goodbye); pinged anyway.
            select.select([conn.fileno()], [], [], timeout)
            conn.execute("SELECT 1")
            return False
        except (psycopg.Error, OSError, ValueError):
            self.close()
            return True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the worker lock's connection failed", exc_info=True)
