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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from .. import jsonutil
from ..errors import IllegalTransition, InvalidInput, RunNotFound
from ..models import CLIENT_TRANSITIONS, ItemState, NewRun, RunStatus
from .admin import AdminMixin
from .queries import load_queries, migrations
from .reads import ReadsMixin
from .records import FAR_FUTURE, Checkpoint, Claimed, Claims, Fence, RunFilter, step_from_row
from .retention import RetentionMixin
from .tx import RUN, WAKE, Later, Row, Sent, StoreObserver, Tx

#: Parked items made ready by one scanning claim at most (the rest by the next ones).
UNPARK_BATCH = 500

__all__ = ["RUN", "WAKE", "Checkpoint", "Claimed", "Fence", "Row", "RunFilter", "Store", "Tx"]


def _invalid_inputs(errors: list[Any]) -> dict[str, Any]:
    """The error of a run whose every input was refused at its start: what is wrong with
    the (first) input, and each input's error."""
    first = errors[0].get("message") if isinstance(errors[0], dict) else None
    message = first or "its input does not match the workflow's input type"
    if len(errors) > 1:
        message = f"all {len(errors)} inputs are invalid; the first: {message}"
    return {"code": "invalid_input", "message": message, "inputs": errors}


class Store(ReadsMixin, AdminMixin, RetentionMixin, abc.ABC):
    """Every operation on the database, for one backend."""

    backend: str
    #: True when other processes' commits can only be noticed by polling.
    needs_polling: bool
    #: Queries only this backend has (fast paths of its own); every other name exists
    #: for both backends.
    own_queries: frozenset[str] = frozenset()
    #: Whether the claim query also starts the claimed items' runs and returns
    #: each run's columns (deadline_at, sync_mode, max_results, options, error) with its
    #: items; otherwise start_runs follows them.
    claim_starts_runs = False
    #: Told of every statement, transaction and pipeline sync when set (measurement:
    #: ``runyard bench``); None by default.
    observer: StoreObserver | None = None

    def __init__(self, url: str) -> None:
        self.url = url
        self.queries = load_queries(self.backend)

    # -- connections (per backend) -------------------------------------------------

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

    def create_run_txn(self, tx: Tx, run: NewRun) -> Later[tuple[Row, bool]]:
        """Insert ``run`` with its items; ``(row, created)``, read once the commit is on
        its way (runs created together then share one round trip). An existing id returns
        the stored run untouched (idempotent trigger)."""
        run_params, item_params = self._new_run_params(run)
        if run.flow_limits is not None:
            tx.send("upsert_flow_key", run.flow_limits)
        inserted = tx.send("insert_run", run_params)
        # Items are inserted from the run row, so they ride with it (and do nothing when
        # the run already existed: same keys, ON CONFLICT DO NOTHING).
        tx.send_many("insert_item", item_params)
        # Announced even if the id existed (a harmless look) so that nothing is left to
        # do once the answer is read.
        tx.announce_wake(run.due_at())

        def read() -> tuple[Row, bool]:
            row = inserted.one()
            return (row, True) if row is not None else (self._existing_run(tx, run.id), False)

        return Later(read)

    def merged_writes(self) -> list[tuple[Callable[..., Any], Callable[..., Later[list[Any]]]]]:
        """Writes that several jobs of one group make in one call: (the job's function,
        the function taking the argument tuples of all of them). None by default: each
        job of a group runs on its own in the shared transaction."""
        return []

    @staticmethod
    def _existing_run(tx: Tx, run_id: str) -> Row:
        existing = tx.q1("get_run", {"id": run_id})
        assert existing is not None
        return existing

    @staticmethod
    def _new_run_params(run: NewRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
        return run_params, item_params

    # -- claiming ------------------------------------------------------------------

    def claim_txn(
        self,
        tx: Tx,
        owner: str,
        wrefs: Sequence[str],
        limit: int,
        lease_s: float,
        scan: bool = True,
        flow_keys: Sequence[str] = (),
    ) -> Later[Claims]:
        """Claim up to ``limit`` due items of the workflows in ``wrefs`` and load what
        their execution needs: items without a flow-control key, and those of
        ``flow_keys`` as far as each key's limits allow. ``scan`` also promotes due
        SCHEDULED runs, readies the parked items that came due (a sleep's end, a timeout,
        a backoff) and asks which keys have due items, answered with the claims
        (``Claims.flow_keys``) for the next call to claim from (callers scan every
        ~100 ms, not on every claim). The claims are read once the commit is on its way:
        on PostgreSQL a claim given no keys takes one round trip, with a scan too."""
        if scan:
            tx.send("promote_scheduled")
            tx.send("unpark_due", {"limit": UNPARK_BATCH})
        base = {"owner": owner, "wrefs": list(wrefs), "lease_s": lease_s}
        keyed: list[Row] = []
        left = limit
        for key in flow_keys:
            cap = self._flow_capacity_txn(tx, key, left)
            if cap <= 0:
                continue
            got = tx.q("claim_keyed", {**base, "limit": cap, "flow_key": key})
            for _ in got:
                tx.send("insert_flow_start", {"key": key})
            keyed.extend(got)
            left -= len(got)
            if left <= 0:
                break
        free = tx.send("claim", {**base, "limit": left}) if left > 0 else None
        due = tx.send("due_flow_keys", {"wrefs": list(wrefs), "limit": limit}) if scan else None
        runs: dict[str, Row] | None = None
        if not self.claim_starts_runs and (rows := keyed + (free.rows() if free else [])):
            run_ids = sorted({r["run_id"] for r in rows})
            runs = {r["id"]: r for r in tx.q("start_runs", {"ids": run_ids})}

        def read() -> Claims:
            rows = keyed + (free.rows() if free else [])
            keys = [r["flow_key"] for r in due.rows()] if due else []
            return Claims(self._claimed(tx, owner, rows, runs), keys)

        return Later(read)

    def _claimed(
        self, tx: Tx, owner: str, rows: list[Row], runs: dict[str, Row] | None
    ) -> list[Claimed]:
        """What executing the claimed ``rows`` needs; ``runs``: their runs' columns by id
        (None when each row carries them)."""
        claimed: list[Claimed] = []
        needs_history: list[Claimed] = []
        for r in rows:
            run = r if runs is None else runs[r["run_id"]]
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
                run_items=run["item_count"],
            )
            claimed.append(c)
            if c.last_position > 0 or c.attempt > 1 or c.generation > 0 or c.iteration > 1:
                needs_history.append(c)
        for c in needs_history:
            self._load_history_txn(tx, c)  # (reads of committed checkpoints)
        return claimed

    def _load_history_txn(self, tx: Tx, c: Claimed) -> None:
        key = {"run_id": c.fence.run_id, "idx": c.fence.idx, "iteration": c.iteration}
        c.history = {r["position"]: step_from_row(r) for r in tx.q("item_history", key)}
        failed = tx.q("item_failed_attempts", {**key, "generation": c.generation})
        c.failed_attempts = {r["position"]: r["n"] - r["limited"] for r in failed}
        c.limited_attempts = {r["position"]: r["limited"] for r in failed}
        if c.iteration > 1 or c.sync_mode:
            row = tx.q1("previous_sync_state", key)
            c.sync_state = jsonutil.loads(row["state"]) if row else None

    def claim_upkeep(self, tx: Tx) -> bool:
        """Keep claims cheap after many of them (a backend whose claims leave work behind
        that its server may not clear does it here); whether it did anything."""
        return False

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
        tx.send("upsert_step", {**key, **cp.step_columns()})
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
    ) -> Later[str | None]:
        """Record checkpoints; the run's status, or None when fenced out (read once the
        commit is on its way: a fenced-out write changed nothing either way)."""
        fence = self._send_fence(tx, f, max(cp.position for cp in cps))
        for cp in cps:
            self._send_checkpoint(tx, f, iteration, cp)

        def status() -> str | None:
            row = fence.one()
            return row["status"] if row else None

        return Later(status)

    def checkpoint_many_txn(
        self, tx: Tx, calls: Sequence[tuple[Fence, int, Sequence[Checkpoint]]]
    ) -> Later[list[str | None]]:
        """:meth:`checkpoint_txn` for several executions sharing a transaction."""
        each = [self.checkpoint_txn(tx, f, iteration, cps) for f, iteration, cps in calls]
        return Later(lambda: [c.result() for c in each])

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
        sole: bool = False,
    ) -> str | Later[str | None] | None:
        """Write the item's outcome (and its last checkpoints) and, when it was the
        run's last open input, the run's outcome. The run's status, or None if fenced
        (a backend may read it once the commit is on its way). ``sole``: the item is its
        run's only input (a backend that cannot tell whether the outcome ended the run
        before it commits may then announce the run without asking)."""
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
        # The run's row first, then the item's, as a cancel and an outcome lock them: the
        # other way round, a cancel of the run deadlocked with it.
        params = {**self._fence_params(f), "due_at": due_at, "waiting_for": waiting_for}
        tx.send("set_run_waiting", params)
        fence = self._send_fence(tx, f, max((cp.position for cp in pending), default=0))
        for cp in pending:
            self._send_checkpoint(tx, f, iteration, cp)
        tx.send("suspend_item", params)
        tx.announce_wake(due_at)  # (a pause's or a shutdown's hand-back is due now)
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
        run_deadline: float | None = None,
    ) -> tuple[str, Any]:
        """Resolve a wait for the first of ``event_ids`` stored since ``since``, until
        ``deadline`` (the wait's own) or ``run_deadline`` (its run's), whichever is first.

        Returns ``("event", (event_id, data))``, ``("timeout", None)`` (the wait's
        deadline passed), ``("run_timeout", None)`` (the run's deadline passed: the run
        is over, whatever the wait's), ``("suspended", None)`` after registering waiters
        and handing the item back until the earlier deadline, or ``("fenced", None)``.
        Sender and waiter meet on rows under one lock per event id, so a wake-up cannot be
        lost (RELIABILITY.md rule 5)."""
        tx.send("lock_run", {"run_id": f.run_id})  # (the run's row first, as in suspend_txn)
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
        if run_deadline is not None and now["now"] >= run_deadline:
            tx.exec("delete_item_waiters", {"run_id": f.run_id, "idx": f.idx})
            return "run_timeout", None
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
        due_at = min(d for d in (deadline, run_deadline, FAR_FUTURE) if d is not None)
        params = {
            **self._fence_params(f),
            "due_at": due_at,
            "waiting_for": "event:" + ",".join(event_ids),
        }
        tx.exec("set_run_waiting", params)
        tx.exec("suspend_item", params)
        if due_at < FAR_FUTURE:
            tx.announce_wake(due_at)  # its timeout
        return "suspended", None

    def forget_waits_txn(self, tx: Tx, f: Fence) -> bool:
        """Drop the item's event waiters: it ends without its wait (its run timed out
        meanwhile), so no notify may count it as woken. False if fenced."""
        if self._fence_txn(tx, f, 0) is None:
            return False
        tx.exec("delete_item_waiters", {"run_id": f.run_id, "idx": f.idx})
        return True

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

    def log_txn(
        self, tx: Tx, f: Fence, iteration: int, attempt: int, level: str, message: str
    ) -> Later[bool]:
        """Store a line of the run's log; False (nothing stored) when fenced out (read
        once the commit is on its way: lines logged together share one round trip)."""
        params = {**self._fence_params(f), "iteration": iteration, "attempt": attempt}
        sent = tx.send("insert_log", {**params, "level": level, "message": message})
        return Later(lambda: sent.one() is not None)

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
            tx.exec("delete_run_waiters", {"run_id": row["id"]})  # no notify wakes it
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
            tx.announce_run(run_id, stop=True)
        return ids

    def _check_single(self, tx: Tx, filt: RunFilter, action: str, changed: list[str]) -> None:
        """For an action on one named run, explain why nothing changed."""
        if not filt.single or filt.ids is None or changed:
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
            tx.exec("hold_items", {"run_id": run_id})
        self._check_single(tx, filt, "pause", ids)
        return ids

    def resume_txn(self, tx: Tx, filt: RunFilter) -> list[str]:
        ids = self._select_txn(tx, filt, CLIENT_TRANSITIONS["resume"])
        for run_id in ids:
            tx.exec("delete_failed_steps", {"run_id": run_id})
            tx.exec("resume_items", {"run_id": run_id})
            tx.exec("release_items", {"run_id": run_id})
            tx.exec("resume_run", {"run_id": run_id})
        if ids:
            tx.announce_wake()
        self._check_single(tx, filt, "resume", ids)
        return ids

    def continue_txn(self, tx: Tx, run_id: str) -> Row:
        filt = RunFilter(ids=[run_id], single=True)
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
        ``position`` (from 1 to one past its last) and executes from there; ``(row,
        created)``. An existing ``new_id`` returns that run untouched (idempotent, however
        many forks with that id race)."""
        src = tx.q1("get_run", {"id": source_id})
        if src is None:
            raise RunNotFound(f"run {source_id!r} does not exist")
        last = tx.q1("last_step_position", {"run_id": source_id, "iteration": src["iteration"]})
        limit = (last["position"] if last and last["position"] is not None else 0) + 1
        if not 1 <= position <= limit:
            raise InvalidInput(
                f"from_step {position} is not a step of run {source_id!r}: its steps are "
                f"positions 1 to {limit - 1}, and {limit} forks after the last",
                details=[{"field": "from_step", "error": f"not from 1 to {limit}"}],
            )
        inserted = tx.q1(
            "fork_run",
            {
                "source_id": source_id,
                "new_id": new_id,
                "position": position,
                "version": workflow_version or src["workflow_version"],
            },
        )
        if inserted is None:
            return self._existing_run(tx, new_id), False
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
