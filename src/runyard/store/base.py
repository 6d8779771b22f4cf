"""The store: every read and write of Runyard, logic written once for both backends.

Each backend subclass opens connections, maps driver errors and brings its own SQL
(``sql/<backend>/queries.sql``); everything else lives here. Methods ending in ``_txn``
run inside a transaction that the caller (the :class:`~runyard.store.dbexec.DbExecutor`)
opened; they never commit.

Fencing (RELIABILITY.md rule 1): every write a worker makes about an item carries the
worker id and the epoch it got when it claimed the item. A fence that matches no row
means another worker owns the item now; the write is dropped and the caller stops.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from .. import jsonutil
from ..errors import IllegalTransition, InvalidInput, RunNotFound
from ..models import (
    CLIENT_TRANSITIONS,
    Attempt,
    Item,
    ItemState,
    NewRun,
    Output,
    Page,
    Run,
    RunStatus,
    StepRecord,
    Transition,
    Waiter,
)
from .queries import load_queries, migrations

Row = Mapping[str, Any]
#: Announcement channels (PostgreSQL NOTIFY channels; in-process on SQLite).
WAKE = "runyard_wake"
RUN = "runyard_run"
FAR_FUTURE = 4102444800.0  # 2100-01-01: "no deadline" for a suspended item


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may write about an item: the owner and the epoch it claimed with."""

    run_id: str
    idx: int
    owner: str
    epoch: int


@dataclass(slots=True)
class Checkpoint:
    """A durable operation's record, with the side effects that commit with it."""

    position: int
    name: str
    kind: str
    result: str | None = None  # JSON text
    error: str | None = None  # JSON text; status "failed" when set
    status: str = "completed"
    attempts: int = 1
    started_at: float | None = None
    output: tuple[str | None, str] | None = None  # (dedupe key, JSON data)
    credit: tuple[str, float] | None = None  # (action, amount)
    sync_state: str | None = None  # JSON text


@dataclass(slots=True)
class Claimed:
    """An item a worker now owns, with what it needs to execute it."""

    fence: Fence
    kind: str
    workflow: str
    workflow_version: str
    input: Any
    custom_data: Any
    iteration: int
    generation: int
    attempt: int
    last_position: int
    parent_idx: int | None
    deadline_at: float | None
    sync_mode: str | None
    max_results: int | None
    options: dict[str, Any]
    run_error: Any
    flow_key: str | None = None
    history: dict[int, StepRecord] = field(default_factory=dict)
    failed_attempts: dict[int, int] = field(default_factory=dict)
    sync_state: Any = None


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a list or a bulk action covers."""

    ids: Sequence[str] | None = None
    workflow: str | None = None
    prefix: str | None = None
    statuses: Sequence[str] | None = None
    task_id: str | None = None
    schedule_id: str | None = None
    mode: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    all: bool = False

    def params(self) -> dict[str, Any]:
        prefix = None
        if self.prefix is not None:
            escaped = self.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            prefix = escaped + "%"
        return {
            "ids": list(self.ids) if self.ids is not None else None,
            "workflow": self.workflow,
            "prefix": prefix,
            "statuses": list(self.statuses) if self.statuses else None,
            "task_id": self.task_id,
            "schedule_id": self.schedule_id,
            "mode": self.mode,
            "created_after": self.created_after,
            "created_before": self.created_before,
        }

    @property
    def empty(self) -> bool:
        return (
            not self.all
            and self.ids is None
            and not (
                self.workflow or self.prefix or self.statuses or self.task_id or self.schedule_id
            )
        )


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
        cur = self._cur
        if cur.description is None and cur.rowcount < 0 and self._sync is not None:
            self._sync()  # the answer may not have arrived yet
        return cur

    def rows(self) -> list[Row]:
        if self._rows is None:
            cur = self._arrived()
            self._rows = list(cur.fetchall()) if cur.description else []
        return self._rows

    @property
    def rowcount(self) -> int:
        return int(self._arrived().rowcount)

    def one(self) -> Row | None:
        rows = self.rows()
        return rows[0] if rows else None


class Tx:
    """A cursor inside one transaction, running the backend's named queries."""

    def __init__(self, store: Store, cur: Any, conn: Any = None, pipeline: Any = None) -> None:
        self._store = store
        self._cur = cur
        self._conn = conn
        self._pipeline = pipeline
        self._q = store.queries
        self.announcements: set[tuple[str, str]] = set()

    def announce_wake(self) -> None:
        """After commit, tell every worker that new work may be due."""
        self.announcements.add((WAKE, ""))

    def announce_run(self, run_id: str) -> None:
        """After commit, tell whoever waits on ``run_id`` that it changed."""
        self.announcements.add((RUN, run_id))

    def send(self, name: str, params: Mapping[str, Any] | None = None) -> Sent:
        """Execute without waiting for the answer where the backend allows it."""
        if self._pipeline is None:
            return Sent(rows=self.q(name, params))
        # In pipeline mode each statement needs its own cursor: one cursor would pile
        # the result sets up and answer a later fetch with an earlier statement's rows.
        cur = self._conn.cursor()
        cur.execute(self._q[name], self._store.adapt(params or {}))
        return Sent(cur=cur, sync=self._pipeline.sync)

    def send_many(self, name: str, params: Sequence[Mapping[str, Any]]) -> None:
        """Execute one statement for each set of parameters (no rows returned)."""
        if params:
            adapt = self._store.adapt
            cur = self._conn.cursor() if self._pipeline is not None else self._cur
            cur.executemany(self._q[name], [adapt(p) for p in params])

    @property
    def cursor(self) -> Any:
        return self._cur

    def q(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        if self._pipeline is not None:
            return self.send(name, params).rows()
        cur = self._cur
        cur.execute(self._q[name], self._store.adapt(params or {}))
        return list(cur.fetchall()) if cur.description else []

    def q1(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = self.q(name, params)
        return rows[0] if rows else None

    def exec(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; the number of rows it changed."""
        if self._pipeline is not None:
            return self.send(name, params).rowcount
        cur = self._cur
        cur.execute(self._q[name], self._store.adapt(params or {}))
        return int(cur.rowcount)


def _run(row: Row) -> Run:
    return Run(
        id=row["id"],
        workflow=row["workflow"],
        workflow_version=row["workflow_version"],
        mode=row["mode"],
        status=RunStatus(row["status"]),
        priority=row["priority"],
        input_count=row["input_count"],
        iteration=row["iteration"],
        result=jsonutil.loads(row["result"]),
        error=jsonutil.loads(row["error"]),
        progress=row["progress"],
        progress_message=row["progress_message"],
        credits=row["credits"],
        waiting_for=row["waiting_for"],
        task_id=row["task_id"],
        schedule_id=row["schedule_id"],
        parent_id=row["parent_id"],
        sync_mode=row["sync_mode"],
        max_results=row["max_results"],
        options=jsonutil.loads(row["options"]) or {},
        recovery_attempts=row["recovery_attempts"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        not_before=row["not_before"],
    )


def _item(row: Row) -> Item:
    return Item(
        run_id=row["run_id"],
        idx=row["idx"],
        kind=row["kind"],
        parent_idx=row["parent_idx"],
        name=row["name"],
        input=jsonutil.loads(row["input"]),
        custom_data=jsonutil.loads(row["custom_data"]),
        state=ItemState(row["state"]),
        result=jsonutil.loads(row["result"]),
        error=jsonutil.loads(row["error"]),
        attempt=row["attempt"],
        waiting_for=row["waiting_for"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _step(row: Row) -> StepRecord:
    return StepRecord(
        run_id=row["run_id"],
        item_idx=row["item_idx"],
        iteration=row["iteration"],
        position=row["position"],
        name=row["name"],
        kind=row["kind"],
        status=row["status"],
        result=jsonutil.loads(row["result"]),
        error=jsonutil.loads(row["error"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
    )


def _cursor_encode(created_at: float, run_id: str) -> str:
    return f"{created_at!r}|{run_id}"


def _cursor_decode(cursor: str) -> tuple[float, str]:
    try:
        at, _, run_id = cursor.partition("|")
        return float(at), run_id
    except ValueError:
        raise InvalidInput(
            "cursor is not valid", details=[{"field": "cursor", "error": "malformed"}]
        ) from None


class Store(abc.ABC):
    """Every operation on the database, for one backend."""

    backend: str
    #: True when other processes' commits can only be noticed by polling.
    needs_polling: bool
    #: Queries only this backend has (fast paths of its own); every other name exists
    #: for both backends.
    own_queries: frozenset[str] = frozenset()

    def __init__(self, url: str) -> None:
        self.url = url
        self.queries = load_queries(self.backend)

    # -- connections (per backend) -------------------------------------------------

    @abc.abstractmethod
    def connect(self) -> Any:
        """A new connection, ready for :meth:`transaction`."""

    @abc.abstractmethod
    @contextmanager
    def transaction(self, conn: Any, *, write: bool, pipeline: bool = True) -> Iterator[Tx]:
        """A transaction on ``conn``: committed on success, rolled back on error. Write
        transactions are pipelined where the backend can (not for migration scripts)."""

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

    def list_workflows(self, tx: Tx) -> list[Row]:
        return tx.q("list_workflows")

    def get_workflow(self, tx: Tx, name: str, version: str | None = None) -> Row | None:
        """The record workers published for ``name`` (the newest version unless given)."""
        return tx.q1("get_workflow", {"name": name, "version": version})

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

    def create_run_txn(self, tx: Tx, run: NewRun) -> tuple[Row, bool]:
        """Insert ``run`` with its items; ``(row, created)``. An existing id returns the
        stored run untouched (idempotent trigger)."""
        valid = sum(1 for i in run.inputs if i.error is None)
        if valid == 0:
            status = RunStatus.INVALID
        elif run.not_before is not None or run.delay_s:
            status = RunStatus.SCHEDULED
        else:
            status = RunStatus.QUEUED
        errors = [i.error for i in run.inputs if i.error is not None]
        inserted = tx.send(
            "insert_run",
            {
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
                "error": jsonutil.dumps({"code": "invalid_input", "inputs": errors})
                if status is RunStatus.INVALID
                else None,
            },
        )
        wref = f"{run.workflow}@{run.workflow_version}"
        # Items are inserted from the run row, so they ride with it (and do nothing when
        # the run already existed: same keys, ON CONFLICT DO NOTHING).
        tx.send_many(
            "insert_item",
            [
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
            ],
        )
        row = inserted.one()
        if row is None:
            existing = tx.q1("get_run", {"id": run.id})
            assert existing is not None
            return existing, False
        tx.announce_wake()
        return row, True

    # -- claiming ------------------------------------------------------------------

    def claim_txn(
        self,
        tx: Tx,
        owner: str,
        wrefs: Sequence[str],
        limit: int,
        lease_s: float,
        scan: bool = True,
    ) -> list[Claimed]:
        """Claim up to ``limit`` due items of the workflows in ``wrefs``, flow control
        respected, and load what their execution needs. ``scan`` also promotes due
        SCHEDULED runs and looks at flow-controlled items (callers do it every ~100 ms,
        not on every claim)."""
        if scan:
            tx.send("promote_scheduled")
        base = {"owner": owner, "wrefs": list(wrefs), "lease_s": lease_s}
        rows = tx.q("claim_free", {**base, "limit": limit})
        left = limit - len(rows)
        if left > 0 and scan:
            for key_row in tx.q("due_flow_keys", {"wrefs": list(wrefs), "limit": left}):
                key = key_row["flow_key"]
                cap = self._flow_capacity_txn(tx, key, left)
                if cap <= 0:
                    continue
                got = tx.q("claim_keyed", {**base, "limit": cap, "flow_key": key})
                for _ in got:
                    tx.send("insert_flow_start", {"key": key})
                rows.extend(got)
                left -= len(got)
                if left <= 0:
                    break
        if not rows:
            return []
        run_ids = sorted({r["run_id"] for r in rows})
        runs = {r["id"]: r for r in tx.q("start_runs", {"ids": run_ids})}
        claimed: list[Claimed] = []
        needs_history: list[Claimed] = []
        for r in rows:
            run = runs[r["run_id"]]
            wf, _, ver = r["wref"].rpartition("@")
            c = Claimed(
                fence=Fence(r["run_id"], r["idx"], owner, r["epoch"]),
                kind=r["kind"],
                workflow=wf,
                workflow_version=ver,
                input=jsonutil.loads(r["input"]),
                custom_data=jsonutil.loads(r["custom_data"]),
                iteration=r["iteration"],
                generation=r["generation"],
                attempt=r["attempt"],
                last_position=r["last_position"],
                parent_idx=r["parent_idx"],
                deadline_at=run["deadline_at"],
                sync_mode=run["sync_mode"],
                max_results=run["max_results"],
                options=jsonutil.loads(run["options"]) or {},
                run_error=jsonutil.loads(run["error"]),
                flow_key=r["flow_key"],
            )
            claimed.append(c)
            if c.last_position > 0 or c.attempt > 1 or c.generation > 0 or c.iteration > 1:
                needs_history.append(c)
        for c in needs_history:
            self._load_history_txn(tx, c)
        return claimed

    def _load_history_txn(self, tx: Tx, c: Claimed) -> None:
        key = {"run_id": c.fence.run_id, "idx": c.fence.idx, "iteration": c.iteration}
        c.history = {r["position"]: _step(r) for r in tx.q("item_history", key)}
        c.failed_attempts = {
            r["position"]: r["n"]
            for r in tx.q("item_failed_attempts", {**key, "generation": c.generation})
        }
        if c.iteration > 1 or c.sync_mode:
            row = tx.q1("previous_sync_state", key)
            c.sync_state = jsonutil.loads(row["state"]) if row else None

    def _flow_capacity_txn(self, tx: Tx, key: str, want: int) -> int:
        cfg = tx.q1("lock_flow_key", {"key": key})
        if cfg is None:
            return want
        cap = want
        if cfg["parallelism"] is not None:
            active = tx.q1("flow_active", {"key": key})
            cap = min(cap, cfg["parallelism"] - (active["n"] if active else 0))
        if cfg["rate"] is not None:
            recent = tx.q1("flow_recent", {"key": key, "period_s": cfg["period_s"]})
            cap = min(cap, cfg["rate"] - (recent["n"] if recent else 0))
        return cap

    def acquire_flow_slot_txn(
        self, tx: Tx, key: str, holder: str, owner: str, ttl_s: float
    ) -> float:
        """Take a step-level slot of ``key``: 0 when taken, else seconds to wait."""
        if self._flow_capacity_txn(tx, key, 1) <= 0:
            row = tx.q1("flow_retry_in", {"key": key})
            return max(0.005, float(row["wait_s"])) if row and row["wait_s"] else 0.05
        tx.exec("insert_flow_slot", {"key": key, "holder": holder, "owner": owner, "ttl_s": ttl_s})
        tx.exec("insert_flow_start", {"key": key})
        return 0.0

    def release_flow_slot_txn(self, tx: Tx, key: str, holder: str) -> None:
        tx.exec("delete_flow_slot", {"key": key, "holder": holder})

    # -- writes of an executing item (all fenced) ------------------------------------

    @staticmethod
    def _fence_params(f: Fence) -> dict[str, Any]:
        return {"run_id": f.run_id, "idx": f.idx, "owner": f.owner, "epoch": f.epoch}

    def _send_fence(self, tx: Tx, f: Fence, position: int = 0) -> Sent:
        """Lock the item if ``f`` still owns it; the row answers the run's status (no row:
        fenced out). Statements sent after it in the transaction are guarded by the same
        condition, so they can travel in the same round trip."""
        return tx.send("fence", {**self._fence_params(f), "position": position})

    def _send_checkpoint(self, tx: Tx, f: Fence, iteration: int, cp: Checkpoint) -> None:
        key = {**self._fence_params(f), "iteration": iteration, "position": cp.position}
        tx.send(
            "upsert_step",
            {
                **key,
                "name": cp.name,
                "kind": cp.kind,
                "status": "failed" if cp.error is not None else cp.status,
                "result": cp.result,
                "error": cp.error,
                "attempts": cp.attempts,
                "started_at": cp.started_at,
            },
        )
        if cp.output is not None:
            out_key, data = cp.output
            tx.send("insert_output", {**key, "key": out_key, "data": data})
        if cp.credit is not None:
            action, amount = cp.credit
            tx.send("insert_credit", {**key, "action": action, "amount": amount})
        if cp.sync_state is not None:
            tx.send("save_sync_state", {**key, "state": cp.sync_state})

    def _fence_txn(self, tx: Tx, f: Fence, position: int = 0) -> str | None:
        row = self._send_fence(tx, f, position).one()
        return row["status"] if row else None

    def checkpoint_txn(
        self, tx: Tx, f: Fence, iteration: int, cps: Sequence[Checkpoint]
    ) -> str | None:
        """Record checkpoints; the run's status, or None when fenced out."""
        fence = self._send_fence(tx, f, max(cp.position for cp in cps))
        for cp in cps:
            self._send_checkpoint(tx, f, iteration, cp)
        row = fence.one()
        return row["status"] if row else None

    def record_attempt_txn(
        self,
        tx: Tx,
        f: Fence,
        iteration: int,
        generation: int,
        position: int,
        name: str,
        attempt: int,
        started_at: float,
        error: str,
    ) -> str | None:
        status = self._fence_txn(tx, f, 0)
        if status is None:
            return None
        tx.exec(
            "insert_attempt",
            {
                "run_id": f.run_id,
                "idx": f.idx,
                "iteration": iteration,
                "generation": generation,
                "position": position,
                "name": name,
                "attempt": attempt,
                "started_at": started_at,
                "error": error,
            },
        )
        return status

    def complete_item_txn(
        self,
        tx: Tx,
        f: Fence,
        iteration: int,
        pending: Sequence[Checkpoint],
        state: ItemState,
        result: str | None,
        error: str | None,
    ) -> str | None:
        """Write the item's outcome (and its last checkpoints) and, when it was the
        run's last open input, the run's outcome. The run's status, or None if fenced."""
        # The run row is locked first, in a statement of its own, so that the finalize
        # statement's snapshot sees every other item of the run as committed.
        tx.send("lock_run", {"run_id": f.run_id})
        fence = self._send_fence(tx, f, max((cp.position for cp in pending), default=0))
        for cp in pending:
            self._send_checkpoint(tx, f, iteration, cp)
        tx.send(
            "finish_item",
            {**self._fence_params(f), "state": state.value, "result": result, "error": error},
        )
        final = tx.send("finalize_run", {"run_id": f.run_id})
        row = fence.one()
        if row is None:
            return None
        done = final.one()
        return self._after_finalize_txn(
            tx, f.run_id, done["status"] if done else None, row["status"]
        )

    def _after_finalize_txn(
        self, tx: Tx, run_id: str, final_status: str | None, run_status: str
    ) -> str:
        """The run's status after an item's outcome; a run that just ended FAILED gets
        its on_failure item (once per failure)."""
        if final_status is None:
            return run_status
        if final_status in ("FAILED", "CRASHED"):
            tx.exec("insert_hook_item", {"run_id": run_id})
            tx.announce_wake()
        tx.announce_run(run_id)
        return final_status

    def suspend_txn(
        self,
        tx: Tx,
        f: Fence,
        iteration: int,
        due_at: float,
        waiting_for: str | None,
        pending: Sequence[Checkpoint],
    ) -> bool:
        """Hand the item back until ``due_at`` (a sleep, an event wait, a retry backoff,
        a pause or a graceful shutdown), with its pending checkpoints."""
        fence = self._send_fence(tx, f, max((cp.position for cp in pending), default=0))
        for cp in pending:
            self._send_checkpoint(tx, f, iteration, cp)
        params = {**self._fence_params(f), "due_at": due_at, "waiting_for": waiting_for}
        tx.send("set_run_waiting", params)
        tx.send("suspend_item", params)
        return fence.one() is not None

    def begin_wait_txn(
        self,
        tx: Tx,
        f: Fence,
        iteration: int,
        pending: Sequence[Checkpoint],
        position: int,
        name: str,
        event_ids: Sequence[str],
        since: float,
        deadline: float | None,
    ) -> tuple[str, Any]:
        """Resolve a wait for the first of ``event_ids`` stored since ``since``.

        Returns ``("event", (event_id, data))``, ``("timeout", None)``, ``("suspended",
        None)`` after registering waiters and handing the item back, or ``("fenced",
        None)``. Sender and waiter meet on rows under one lock per event id, so a wake-up
        cannot be lost (RELIABILITY.md rule 5)."""
        status = self._fence_txn(tx, f, position)
        if status is None:
            return "fenced", None
        for cp in pending:
            self._send_checkpoint(tx, f, iteration, cp)
        for event_id in sorted(event_ids):
            tx.q("lock_event", {"event_id": event_id})
        ev = tx.q1("first_event", {"event_ids": list(event_ids), "since": since})
        if ev is not None:
            tx.exec("delete_item_waiters", {"run_id": f.run_id, "idx": f.idx})
            return "event", (ev["event_id"], jsonutil.loads(ev["data"]))
        now = tx.q1("now")
        assert now is not None
        if deadline is not None and now["now"] >= deadline:
            tx.exec("delete_item_waiters", {"run_id": f.run_id, "idx": f.idx})
            return "timeout", None
        for event_id in event_ids:
            tx.exec(
                "insert_waiter",
                {
                    "event_id": event_id,
                    "run_id": f.run_id,
                    "idx": f.idx,
                    "position": position,
                    "since": since,
                    "deadline": deadline,
                },
            )
        params = {
            **self._fence_params(f),
            "due_at": deadline if deadline is not None else FAR_FUTURE,
            "waiting_for": "event:" + ",".join(event_ids),
        }
        tx.exec("set_run_waiting", params)
        tx.exec("suspend_item", params)
        return "suspended", None

    def notify_txn(self, tx: Tx, event_id: str, data: str | None) -> list[str]:
        """Store an event, then wake every run waiting on it; the run ids woken."""
        tx.q("lock_event", {"event_id": event_id})
        tx.exec("insert_event", {"event_id": event_id, "data": data})
        woken = tx.q("wake_waiters", {"event_id": event_id})
        tx.exec("delete_event_waiters", {"event_id": event_id})
        run_ids = sorted({r["run_id"] for r in woken})
        if run_ids:
            tx.announce_wake()
        for run_id in run_ids:
            tx.announce_run(run_id)
        return run_ids

    def start_map_txn(
        self,
        tx: Tx,
        f: Fence,
        iteration: int,
        pending: Sequence[Checkpoint],
        position: int,
        name: str,
        elements: Sequence[str],
    ) -> int | None:
        """Create the items of a fan-out once; the index of its first item (None if fenced)."""
        status = self._fence_txn(tx, f, position)
        if status is None:
            return None
        for cp in pending:
            self._send_checkpoint(tx, f, iteration, cp)
        row = tx.q1("reserve_items", {"run_id": f.run_id, "n": len(elements)})
        assert row is not None
        base = int(row["base"])
        tx.send_many(
            "insert_map_item",
            [
                {
                    "run_id": f.run_id,
                    "parent_idx": f.idx,
                    "idx": base + i,
                    "name": name,
                    "input": element,
                }
                for i, element in enumerate(elements)
            ],
        )
        cp = Checkpoint(
            position=position,
            name=name,
            kind="map",
            status="waiting",
            result=jsonutil.dumps({"base": base, "n": len(elements)}),
        )
        self._send_checkpoint(tx, f, iteration, cp)
        return base

    def set_elements_txn(
        self, tx: Tx, f: Fence, updates: Sequence[tuple[int, str, str | None, str | None]]
    ) -> bool:
        """Record fan-out elements' states: ``(idx, state, result, error)`` each."""
        if self._fence_txn(tx, f, 0) is None:
            return False
        for idx, state, result, error in updates:
            tx.exec(
                "set_element",
                {"run_id": f.run_id, "idx": idx, "state": state, "result": result, "error": error},
            )
        return True

    def progress_txn(self, tx: Tx, f: Fence, fraction: float | None, message: str | None) -> bool:
        if self._fence_txn(tx, f, 0) is None:
            return False
        tx.exec("set_progress", {"run_id": f.run_id, "progress": fraction, "message": message})
        return True

    def log_txn(self, tx: Tx, run_id: str, idx: int, level: str, message: str) -> None:
        tx.exec("insert_log", {"run_id": run_id, "idx": idx, "level": level, "message": message})

    # -- leases, recovery ----------------------------------------------------------

    def heartbeat_txn(
        self, tx: Tx, owner: str, lease_s: float, fences: Sequence[Fence]
    ) -> tuple[set[tuple[str, int, int]], dict[str, str]]:
        """Extend the leases of the items ``owner`` is executing (only those: an item it
        claimed but is not executing must expire and be recovered); the items it still
        owns and the statuses of its runs that want it to stop (PAUSED, CANCELED)."""
        owned: set[tuple[str, int, int]] = set()
        for f in fences:
            row = tx.q1("extend_lease", {**self._fence_params(f), "lease_s": lease_s})
            if row is not None:
                owned.add((f.run_id, f.idx, f.epoch))
        run_ids = sorted({f.run_id for f in fences})
        tx.exec("extend_flow_slots", {"owner": owner, "lease_s": lease_s})
        tx.exec("worker_heartbeat", {"id": owner})
        stops = {}
        if run_ids:
            stops = {r["id"]: r["status"] for r in tx.q("stopping_runs", {"ids": sorted(run_ids)})}
        return owned, stops

    def recover_txn(self, tx: Tx, limit: int = 100) -> list[str]:
        """Re-queue items whose lease expired; runs past ``max_recovery_attempts`` end
        CRASHED. Never touches a live lease. The run ids recovered."""
        expired = tx.q("expire_leases", {"limit": limit})
        if not expired:
            tx.exec("expire_flow_slots")
            tx.exec("trim_flow_starts")
            return []
        run_ids = sorted({r["run_id"] for r in expired})
        tx.exec("count_recoveries", {"ids": run_ids})
        for row in tx.q("runs_over_recovery", {"ids": run_ids}):
            error = jsonutil.dumps(
                {
                    "code": "crashed",
                    "message": f"the run's worker died {row['recovery_attempts']} times "
                    f"(max_recovery_attempts={row['max_recovery_attempts']})",
                }
            )
            tx.exec("crash_run", {"run_id": row["id"], "error": error})
            tx.exec("crash_items", {"run_id": row["id"], "error": error})
            tx.exec("insert_hook_item", {"run_id": row["id"]})
            tx.announce_run(row["id"])
        tx.announce_wake()
        return run_ids

    # -- client transitions --------------------------------------------------------

    def _select_txn(self, tx: Tx, filt: RunFilter, statuses: frozenset[RunStatus]) -> list[str]:
        params = filt.params()
        params["statuses"] = sorted(s.value for s in statuses)
        ids = [r["id"] for r in tx.q("select_runs_for_action", params)]
        for run_id in ids:
            tx.announce_run(run_id)
        return ids

    def _check_single(self, tx: Tx, filt: RunFilter, action: str, changed: list[str]) -> None:
        """For an action on one id, explain why nothing changed."""
        if filt.ids is None or len(filt.ids) != 1 or changed:
            return
        row = tx.q1("get_run", {"id": filt.ids[0]})
        if row is None:
            raise RunNotFound(f"run {filt.ids[0]!r} does not exist")
        allowed = ", ".join(sorted(s.value for s in CLIENT_TRANSITIONS[action]))
        raise IllegalTransition(
            f"cannot {action} run {filt.ids[0]!r}: it is {row['status']} "
            f"({action} applies to {allowed})",
            details={"status": row["status"], "action": action},
        )

    def cancel_txn(self, tx: Tx, filt: RunFilter) -> list[str]:
        if filt.empty:
            raise InvalidInput(
                "say which runs to cancel: ids, workflow, prefix or all",
                details=[{"field": "filter", "error": "no runs selected"}],
            )
        ids = self._select_txn(tx, filt, CLIENT_TRANSITIONS["cancel"])
        for run_id in ids:
            tx.exec("cancel_run", {"run_id": run_id})
            tx.exec("cancel_items", {"run_id": run_id})
            tx.exec("delete_run_waiters", {"run_id": run_id})
        self._check_single(tx, filt, "cancel", ids)
        return ids

    def pause_txn(self, tx: Tx, filt: RunFilter) -> list[str]:
        ids = self._select_txn(tx, filt, CLIENT_TRANSITIONS["pause"])
        for run_id in ids:
            tx.exec("pause_run", {"run_id": run_id})
        self._check_single(tx, filt, "pause", ids)
        return ids

    def resume_txn(self, tx: Tx, filt: RunFilter) -> list[str]:
        ids = self._select_txn(tx, filt, CLIENT_TRANSITIONS["resume"])
        for run_id in ids:
            tx.exec("delete_failed_steps", {"run_id": run_id})
            tx.exec("resume_items", {"run_id": run_id})
            tx.exec("resume_run", {"run_id": run_id})
        if ids:
            tx.announce_wake()
        self._check_single(tx, filt, "resume", ids)
        return ids

    def continue_txn(self, tx: Tx, run_id: str) -> Row:
        filt = RunFilter(ids=[run_id])
        ids = self._select_txn(tx, filt, CLIENT_TRANSITIONS["continue"])
        self._check_single(tx, filt, "continue", ids)
        tx.exec("continue_items", {"run_id": run_id})
        tx.exec("continue_run", {"run_id": run_id})
        tx.announce_wake()
        tx.announce_run(run_id)
        row = tx.q1("get_run", {"id": run_id})
        assert row is not None
        return row

    def fork_txn(
        self,
        tx: Tx,
        source_id: str,
        new_id: str,
        position: int,
        new_input: str | None,
        workflow_version: str | None,
    ) -> tuple[Row, bool]:
        """A new run of the same workflow that reuses ``source_id``'s checkpoints before
        ``position`` and executes from there."""
        src = tx.q1("get_run", {"id": source_id})
        if src is None:
            raise RunNotFound(f"run {source_id!r} does not exist")
        existing = tx.q1("get_run", {"id": new_id})
        if existing is not None:
            return existing, False
        tx.exec(
            "fork_run",
            {
                "source_id": source_id,
                "new_id": new_id,
                "position": position,
                "version": workflow_version or src["workflow_version"],
            },
        )
        tx.exec(
            "fork_items",
            {
                "source_id": source_id,
                "new_id": new_id,
                "input": new_input,
                "wref": f"{src['workflow']}@{workflow_version or src['workflow_version']}",
                "position": position - 1,
            },
        )
        params = {
            "source_id": source_id,
            "new_id": new_id,
            "position": position,
            "iteration": src["iteration"],
        }
        tx.exec("fork_steps", params)
        tx.exec("fork_outputs", params)
        tx.announce_wake()
        row = tx.q1("get_run", {"id": new_id})
        assert row is not None
        return row, True

    # -- reads ---------------------------------------------------------------------

    def get_run(self, tx: Tx, run_id: str) -> Run:
        row = tx.q1("get_run", {"id": run_id})
        if row is None:
            raise RunNotFound(f"run {run_id!r} does not exist")
        return _run(row)

    def run_statuses(self, tx: Tx, run_ids: Sequence[str]) -> dict[str, str]:
        return {r["id"]: r["status"] for r in tx.q("run_statuses", {"ids": list(run_ids)})}

    def list_runs(
        self, tx: Tx, filt: RunFilter, cursor: str | None, limit: int, order: str = "desc"
    ) -> Page:
        if not 1 <= limit <= 100:
            raise InvalidInput(
                "limit must be between 1 and 100",
                details=[{"field": "limit", "error": "between 1 and 100"}],
            )
        if order not in ("asc", "desc"):
            raise InvalidInput(
                "order must be asc or desc", details=[{"field": "order", "error": "asc|desc"}]
            )
        params = filt.params()
        after_at, after_id = _cursor_decode(cursor) if cursor else (None, None)
        params.update({"after_at": after_at, "after_id": after_id, "limit": limit + 1})
        rows = tx.q("list_runs_desc" if order == "desc" else "list_runs_asc", params)
        runs = [_run(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            nxt = _cursor_encode(runs[-1].created_at, runs[-1].id)
        return Page(items=runs, next_cursor=nxt)

    def get_items(
        self,
        tx: Tx,
        run_id: str,
        *,
        state: str | None = None,
        offset: int = 0,
        limit: int = 100,
        kinds: Sequence[str] = ("input", "map"),
    ) -> list[Item]:
        rows = tx.q(
            "list_items",
            {
                "run_id": run_id,
                "state": state,
                "offset": offset,
                "limit": limit,
                "kinds": list(kinds),
            },
        )
        return [_item(r) for r in rows]

    def get_steps(self, tx: Tx, run_id: str, iteration: int | None = None) -> list[StepRecord]:
        return [_step(r) for r in tx.q("list_steps", {"run_id": run_id, "iteration": iteration})]

    def get_attempts(self, tx: Tx, run_id: str) -> list[Attempt]:
        return [
            Attempt(
                run_id=r["run_id"],
                item_idx=r["item_idx"],
                position=r["position"],
                name=r["name"],
                attempt=r["attempt"],
                started_at=r["started_at"],
                ended_at=r["ended_at"],
                error=jsonutil.loads(r["error"]),
            )
            for r in tx.q("list_attempts", {"run_id": run_id})
        ]

    def get_outputs(
        self,
        tx: Tx,
        run_id: str,
        after_id: int = 0,
        limit: int = 100,
        iteration: int | None = None,
    ) -> list[Output]:
        rows = tx.q(
            "list_outputs",
            {"run_id": run_id, "after_id": after_id, "limit": limit, "iteration": iteration},
        )
        return [
            Output(
                id=r["id"],
                run_id=r["run_id"],
                item_idx=r["item_idx"],
                iteration=r["iteration"],
                key=r["key"],
                data=jsonutil.loads(r["data"]),
                created_at=r["created_at"],
            )
            for r in rows
        ]

    def get_transitions(self, tx: Tx, run_id: str) -> list[Transition]:
        return [
            Transition(r["run_id"], r["from_status"], r["to_status"], r["at"])
            for r in tx.q("list_transitions", {"run_id": run_id})
        ]

    def get_waiters(self, tx: Tx, event_id: str) -> list[Waiter]:
        return [
            Waiter(r["event_id"], r["run_id"], r["item_idx"], r["since"], r["deadline"])
            for r in tx.q("list_waiters", {"event_id": event_id})
        ]

    def get_logs(self, tx: Tx, run_id: str) -> list[Row]:
        return tx.q("list_logs", {"run_id": run_id})

    def has_due_work(self, tx: Tx, wrefs: Sequence[str]) -> bool:
        return tx.q1("has_due_work", {"wrefs": list(wrefs)}) is not None

    def now(self, tx: Tx) -> float:
        row = tx.q1("now")
        return float(row["now"]) if row else time.time()
