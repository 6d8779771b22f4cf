"""The store: every read and write of Runyard, logic written once for both backends.

Each backend subclass opens connections, maps driver errors and brings its own SQL
(``sql/<backend>/queries.sql``); everything else lives here and in the mixins of its
concerns: claims and leases (:mod:`.claims`), an executing item's fenced writes
(:mod:`.execution`), clients' transitions (:mod:`.control`), reads (:mod:`.reads`), API
keys and tasks (:mod:`.admin`), retention (:mod:`.retention`). Methods ending in
``_txn`` run inside a transaction that the caller (the
:class:`~runyard.store.dbexec.DbExecutor`) opened; they never commit.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from .. import jsonutil
from ..models import NewRun, RunStatus, WorkflowRecord
from .admin import AdminMixin, workflow_from_row
from .callbacks import CallbacksStoreMixin, send_run_callback
from .changes import Changes
from .claims import ClaimsMixin
from .control import ControlMixin, existing_run
from .execution import ExecutionMixin
from .queries import load_queries, migrations
from .reads import ReadsMixin
from .records import Checkpoint, Claimed, Fence, MergedWrite, NewRunParams, RunFilter
from .retention import RetentionMixin
from .schedules import SchedulesStoreMixin
from .tx import RUN, WAKE, Later, Row, StoreObserver, Tx

if TYPE_CHECKING:
    from .hub import CommitCounter, Source

__all__ = ["RUN", "WAKE", "Checkpoint", "Claimed", "Fence", "Row", "RunFilter", "Store", "Tx"]


def _invalid_inputs(errors: list[Any]) -> dict[str, Any]:
    """The error of a run whose every input was refused at its start: what is wrong with
    the (first) input, and each input's error."""
    first = errors[0].get("message") if isinstance(errors[0], dict) else None
    message = first or "its input does not match the workflow's input type"
    if len(errors) > 1:
        message = f"all {len(errors)} inputs are invalid; the first: {message}"
    return {"code": "invalid_input", "message": message, "inputs": errors}


class Store(
    ClaimsMixin,
    ExecutionMixin,
    ControlMixin,
    ReadsMixin,
    AdminMixin,
    RetentionMixin,
    SchedulesStoreMixin,
    CallbacksStoreMixin,
    abc.ABC,
):
    """Every operation on the database, for one backend."""

    backend: str
    #: True when other processes' commits can only be noticed by polling.
    needs_polling: bool
    #: Queries only this backend has (fast paths of its own); every other name exists
    #: for both backends.
    own_queries: frozenset[str] = frozenset()
    #: Told of every statement, transaction and pipeline sync when set (measurement:
    #: ``runyard bench``); None by default.
    observer: StoreObserver | None = None

    def __init__(self, url: str) -> None:
        self.url = url
        self.queries = load_queries(self.backend)
        #: This process's hubs, told of what each transaction announced once committed.
        self.changes = Changes()

    # -- connections (per backend) -------------------------------------------------

    def probe(self) -> None:
        """One round trip on a connection of its own (a health check)."""
        conn = self.connect()
        try:
            with self.transaction(conn, write=False) as tx:
                self.now(tx)
        finally:
            self.close_connection(conn)

    @abc.abstractmethod
    def connect(self) -> Any:
        """A new connection, ready for :meth:`transaction`."""

    @abc.abstractmethod
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
        """A transaction on ``conn``: committed on success, rolled back on error. Write
        transactions are pipelined where the backend can (not for migration scripts).

        ``durable=False`` commits without waiting for the disk (SQLite
        ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``): still atomic,
        visible at once and ordered before every later commit, whose flush takes it along;
        only a power cut or an operating-system crash may undo it (which writes may:
        :mod:`runyard.store.dbexec`). ``wait=False`` (SQLite): fail at once with a
        transient error instead of waiting for a lock another connection holds;
        ``lock_wait_s``: wait at most this long for SQLite's write lock (None: the
        connection's busy timeout); on PostgreSQL for a row lock, when it is short (a
        request's window, see ``LOCK_TIMEOUT_BELOW_S``): otherwise as long as it takes,
        only Runyard's own short transactions hold them."""

    @abc.abstractmethod
    def adapt(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Parameters in the form the driver and this backend's SQL expect."""

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """True for errors that a retry on a fresh connection may cure."""

    @abc.abstractmethod
    def run_script(self, tx: Tx, sql: str) -> None:
        """Run a script of several statements inside the transaction ``tx``."""

    def close_connection(self, conn: Any) -> None:
        with suppress(Exception):
            conn.close()

    def close(self) -> None:
        """Release what the store holds besides connections (nothing by default)."""

    @abc.abstractmethod
    def change_source(self, *, work: bool, runs: bool) -> Source | None:
        """What tells this process of other processes' commits: of runs stopped, and also
        of new work if ``work``, of every run's changes if ``runs``; None where nothing
        does (the watcher then polls :meth:`commit_counter`)."""

    def commit_counter(self) -> CommitCounter | None:
        """A counter of other connections' commits, where the backend has one (to notice
        commits nobody announced); None where every commit is announced."""
        return None

    @property
    def precise_wakeups(self) -> bool:
        """Whether the watcher's wake-ups say what changed (new work, which run), rather
        than only that something was committed."""
        return not self.needs_polling

    # -- migrations ----------------------------------------------------------------

    def upgrade(self) -> list[int]:
        """Apply every migration not applied yet; the numbers applied."""
        conn = self.connect()
        try:
            with self.transaction(conn, write=True) as tx:
                tx.exec("create_migrations_table")
            applied: list[int] = []
            for number, name, sql in migrations(self.backend):
                # Check, apply and record in one transaction under a lock, so processes
                # starting together apply each migration once.
                with self.transaction(conn, write=True, pipeline=False) as tx:
                    tx.q("lock_migrations")
                    if number in {r["version"] for r in tx.q("applied_migrations")}:
                        continue
                    self.run_script(tx, sql)
                    tx.exec("record_migration", {"version": number, "name": name})
                applied.append(number)
            return applied
        finally:
            self.close_connection(conn)

    def current_version(self, tx: Tx) -> int:
        rows = tx.q("applied_migrations")
        return max((r["version"] for r in rows), default=0)

    # -- registry ------------------------------------------------------------------

    def register_workflows_txn(self, tx: Tx, workflows: Sequence[dict[str, Any]]) -> None:
        for wf in workflows:
            tx.exec("upsert_workflow", wf)
            fc = wf.get("flow_control")
            if fc:
                tx.exec("upsert_flow_key", fc)

    def list_workflows(self, tx: Tx) -> list[WorkflowRecord]:
        """Every published version, ordered by name, the newest version first."""
        return [workflow_from_row(r) for r in tx.q("list_workflows")]

    def get_workflow(self, tx: Tx, name: str, version: str | None = None) -> WorkflowRecord | None:
        """The record workers published for ``name`` (the newest version unless given)."""
        row = tx.q1("get_workflow", {"name": name, "version": version})
        return workflow_from_row(row) if row is not None else None

    def register_worker_txn(
        self, tx: Tx, worker_id: str, host: str, pid: int, concurrency: int, workflows: list[str]
    ) -> None:
        tx.exec(
            "upsert_worker",
            {
                "id": worker_id,
                "host": host,
                "pid": pid,
                "concurrency": concurrency,
                "workflows": jsonutil.dumps(workflows),
            },
        )

    def worker_stopped_txn(self, tx: Tx, worker_id: str) -> None:
        tx.exec("worker_stopped", {"id": worker_id})

    def upsert_flow_key_txn(
        self, tx: Tx, key: str, parallelism: int | None, rate: int | None, period_s: float
    ) -> None:
        tx.exec(
            "upsert_flow_key",
            {"key": key, "parallelism": parallelism, "rate": rate, "period_s": period_s},
        )

    # -- creating runs -------------------------------------------------------------

    def create_run_txn(self, tx: Tx, run: NewRun) -> Later[tuple[Row, bool]]:
        """Insert ``run`` with its items; ``(row, created)``, read once the commit is on
        its way (runs created together then share one round trip). An existing id returns
        the stored run untouched (idempotent trigger)."""
        params = self._new_run_params(run)
        if run.flow_limits is not None:
            tx.send("upsert_flow_key", run.flow_limits)
        inserted = tx.send("insert_run", params.run)
        # Items are inserted from the run row, so they ride with it (and do nothing when
        # the run already existed: same keys, ON CONFLICT DO NOTHING).
        tx.send_many("insert_item", params.items)
        self._send_callback(tx, run)
        # Announced even if the id existed (a harmless look) so that nothing is left to
        # do once the answer is read.
        tx.announce_wake(run.due_at())

        def read() -> tuple[Row, bool]:
            row = inserted.one()
            return (row, True) if row is not None else (existing_run(tx, run.id), False)

        return Later(read)

    def merged_writes(self) -> list[MergedWrite]:
        """Writes that several jobs of one group make in one call. None by default: each
        job of a group runs on its own in the shared transaction."""
        return []

    @staticmethod
    def _send_callback(tx: Tx, run: NewRun) -> None:
        """The run's callback, stored with it (an existing run keeps its own)."""
        if run.callback is not None:
            send_run_callback(tx, run.id, run.callback)

    @staticmethod
    def _new_run_params(run: NewRun) -> NewRunParams:
        """The parameters of ``insert_run`` and of each ``insert_item`` for ``run``."""
        valid = sum(1 for i in run.inputs if i.error is None)
        if valid == 0:
            status = RunStatus.INVALID
        elif run.not_before is not None or run.delay_s:
            status = RunStatus.SCHEDULED
        else:
            status = RunStatus.QUEUED
        errors = [i.error for i in run.inputs if i.error is not None]
        run_params = {
            "id": run.id,
            "workflow": run.workflow,
            "workflow_version": run.workflow_version,
            "mode": run.mode,
            "status": status.value,
            "priority": run.priority,
            "input_count": len(run.inputs),
            "task_id": run.task_id,
            "schedule_id": run.schedule_id,
            "parent_id": run.parent_id,
            "sync_mode": run.sync_mode,
            "max_results": run.max_results,
            "options": jsonutil.dumps(run.options, what="options"),
            "flow_key": run.flow_key,
            "timeout_s": run.timeout_s,
            "not_before": run.not_before,
            "delay_s": run.delay_s,
            "max_recovery_attempts": run.max_recovery_attempts,
            "has_on_failure": run.has_on_failure,
            "error": jsonutil.dumps(_invalid_inputs(errors))
            if status is RunStatus.INVALID
            else None,
            "request": run.request,
        }
        wref = f"{run.workflow}@{run.workflow_version}"
        item_params = [
            {
                "run_id": run.id,
                "idx": idx,
                "wref": wref,
                "input": jsonutil.dumps(inp.input, what=f"inputs[{idx}].input"),
                "custom_data": jsonutil.dumps_opt(
                    inp.custom_data, what=f"inputs[{idx}].custom_data"
                ),
                "state": "discarded" if inp.error is not None else "queued",
                "error": jsonutil.dumps_opt(inp.error),
            }
            for idx, inp in enumerate(run.inputs)
        ]
        return NewRunParams(run_params, item_params)

    def flow_wait(self, tx: Tx, key: str) -> float | None:
        """None when flow-control ``key`` could start one more item now, else the seconds
        to wait (at least 1)."""
        if self._flow_capacity_txn(tx, key, 1) > 0:
            return None
        row = tx.q1("flow_retry_in", {"key": key})
        wait_s = float(row["wait_s"]) if row and row["wait_s"] is not None else 1.0
        return max(1.0, wait_s)
