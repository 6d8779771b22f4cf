"""Claims and leases (mixed into :class:`~runyard.store.base.Store`): taking due items
with what their execution needs, flow-control capacity and step-level slots, extending the
leases of items in execution, and recovering those whose lease expired."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .. import jsonutil
from ..models import Lease, RunStatus
from .execution import after_run_end
from .records import Claimed, Claims, Fence, Leases, step_from_row
from .tx import Later, Row, Tx


class SessionLock(Protocol):
    """A lock this process holds for as long as its database session lives (blocking
    calls: run them in a thread)."""

    key: int | None

    def acquire(self, key: int | None = None) -> int | None:
        """Connect if need be and take the lock (``key``, or a new random one); the key
        held, or None when ``key`` is taken (by a recovering worker) or the database is
        away."""
        ...

    def lost(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True once the session (and the lock) is gone."""
        ...

    def close(self) -> None: ...


#: Parked items made ready by one scanning claim at most (the rest by the next ones).
UNPARK_BATCH = 500


class Recovered(list[str]):
    """The run ids a recovery pass re-queued items of (a list), and ``crashed``: those of
    them it ended CRASHED (past ``max_recovery_attempts``), whose run spans the
    recovering process records when it traces."""

    def __init__(self, run_ids: Sequence[str] = (), crashed: Sequence[str] = ()) -> None:
        super().__init__(run_ids)
        self.crashed = list(crashed)


class ClaimsMixin:
    """Claiming items, flow control, leases and recovery."""

    #: Whether the claim query also starts the claimed items' runs and returns
    #: each run's columns (deadline_at, sync_mode, max_results, options, error) with its
    #: items; otherwise start_runs follows them.
    claim_starts_runs = False

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
        (``Claims.flow_keys``) for the next call to claim from, and how long until the
        next parked item comes due (``Claims.due_in``, on the database's clock: when to
        look again) (callers scan every ~100 ms, not on every claim). The claims are read
        once the commit is on its way: on PostgreSQL a claim given no keys takes one
        round trip, with a scan too."""
        if scan:
            # Items first, then runs: each statement reads the clock anew, so a delayed
            # run's item (due when its run is) readied by the first is sure to have its
            # run promoted by the second, before the claim starts it. (The other order let
            # an item come due between the two: claimed while its run was still SCHEDULED,
            # the run then promoted after the item had finished, QUEUED for ever.)
            tx.send("unpark_due", {"limit": UNPARK_BATCH})
            tx.send("promote_scheduled")
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
        next_due = tx.send("next_due") if scan else None
        runs: dict[str, Row] | None = None
        if not self.claim_starts_runs and (rows := keyed + (free.rows() if free else [])):
            run_ids = sorted({r["run_id"] for r in rows})
            runs = {r["id"]: r for r in tx.q("start_runs", {"ids": run_ids})}

        def read() -> Claims:
            rows = keyed + (free.rows() if free else [])
            keys = [r["flow_key"] for r in due.rows()] if due else []
            row = next_due.one() if next_due else None
            due_in = None if row is None else row["due_in"]
            return Claims(self._claimed(tx, owner, rows, runs), keys, due_in)

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
                timeout_s=run["timeout_s"],
            )
            claimed.append(c)
            if (
                c.last_position > 0
                or c.attempt > 1
                or c.generation > 0
                or c.iteration > 1
                or c.sync_mode == "incremental"  # (its state: see _load_history_txn)
            ):
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
        c.all_failed_attempts = {r["position"]: r["total"] for r in failed}
        if c.iteration > 1 or c.sync_mode:
            row = tx.q1("previous_sync_state", key)
            if row is None and c.sync_mode == "incremental":
                # A schedule's fire: the state its latest successful earlier fire saved.
                row = tx.q1("schedule_sync_state", key)
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

    def heartbeat_txn(self, tx: Tx, owner: str, lease_s: float, fences: Sequence[Fence]) -> Leases:
        """Extend the leases of the items ``owner`` is executing (only those: an item it
        claimed but is not executing must expire and be recovered); the items it still
        owns and the statuses of its runs that want it to stop (PAUSED, CANCELED)."""
        owned: set[tuple[str, int, int]] = set()
        for f in fences:
            row = tx.q1("extend_lease", {**f.params(), "lease_s": lease_s})
            if row is not None:
                owned.add((f.run_id, f.idx, f.epoch))
        run_ids = sorted({f.run_id for f in fences})
        tx.exec("extend_flow_slots", {"owner": owner, "lease_s": lease_s})
        tx.exec("worker_heartbeat", {"id": owner})
        stops = {}
        if run_ids:
            stops = {r["id"]: r["status"] for r in tx.q("stopping_runs", {"ids": sorted(run_ids)})}
        return Leases(owned, stops)

    def recover_txn(self, tx: Tx, limit: int = 100) -> Recovered:
        """Re-queue items whose lease expired; runs past ``max_recovery_attempts`` end
        CRASHED. Never touches a live lease. The run ids recovered (and crashed)."""
        expired = tx.q("expire_leases", {"limit": limit})
        if not expired:
            tx.exec("expire_flow_slots")
            tx.exec("trim_flow_starts")
            return Recovered()
        return self._requeued_txn(tx, expired)

    # -- early recovery: a worker known dead before its leases expire ---------------------

    #: Whether a worker proves it lives by a session lock (see :meth:`session_lock`).
    session_locks = False

    def session_lock(self) -> SessionLock | None:
        """A lock held for as long as this process's database session lives, whose
        release proves the session ended (None where the backend has none)."""
        return None

    def worker_liveness_txn(
        self,
        tx: Tx,
        worker_id: str,
        host_id: str | None,
        proc_started: float | None,
        lock_key: int | None,
    ) -> bool:
        """Record what proves worker ``worker_id`` dead early: its host and process start
        time, the session lock it holds now. False when the worker was found dead and its
        items recovered meanwhile (its executions must stop: they are fenced out)."""
        recovered = False
        if lock_key is not None and self.session_locks:
            row = tx.q1("worker_lock_state", {"id": worker_id})
            recovered = row is not None and row["stopped_at"] is not None
        params = {"id": worker_id, "host_id": host_id, "proc_started": proc_started}
        tx.exec("worker_liveness", {**params, "lock_key": lock_key})
        return not recovered

    def workers_on_host(self, tx: Tx, host_id: str, worker_id: str) -> list[tuple[str, int, float]]:
        """The other workers of host ``host_id`` not known to have stopped: (id, pid,
        process start time)."""
        return [
            (r["id"], r["pid"], r["proc_started"])
            for r in tx.q("workers_on_host", {"host_id": host_id, "id": worker_id})
        ]

    def unlocked_workers(self, tx: Tx, worker_id: str) -> list[tuple[str, int, str | None]]:
        """Workers whose session lock is free though they took it since the server last
        started (their session ended): (id, lock key, host id)."""
        if not self.session_locks:
            return []
        rows = tx.q("unlocked_workers", {"id": worker_id})
        return [(r["id"], r["lock_key"], r["host_id"]) for r in rows]

    def recover_dead_txn(
        self, tx: Tx, dead: Sequence[str], unlocked: Sequence[tuple[str, int]] = ()
    ) -> Recovered:
        """Re-queue at once the items of workers known dead: ``dead`` (their process is
        gone) and ``unlocked`` (id, lock key: their session ended; each checked again
        under its lock, which the worker cannot take back before this commits). Each is
        marked stopped. The run ids recovered (and crashed)."""
        gone = [w for w in dead if tx.q1("stop_dead_worker", {"id": w, "lock_key": None})]
        for w, key in unlocked:
            took = tx.q1("take_worker_lock", {"lock_key": key})
            if took and took["got"] and tx.q1("stop_dead_worker", {"id": w, "lock_key": key}):
                gone.append(w)
        if not gone:
            return Recovered()
        rows = tx.q("requeue_owned", {"ids": sorted(gone)})
        if not rows:
            return Recovered()
        return self._requeued_txn(tx, rows, max(r["due_at"] for r in rows))

    def run_lease(self, tx: Tx, run_id: str) -> Lease | None:
        """The lease run ``run_id`` waits on: the first to expire of an item whose worker
        missed a heartbeat (one every third of the lease) or stopped; None if none. (On
        the database's clock, as leases are.)"""
        for r in tx.q("run_leases", {"run_id": run_id}):
            now, beat, expires = r["now"], r["heartbeat_at"], r["lease_expires_at"]
            stale = beat is None or now - beat > (expires - beat) / 2
            if r["stopped_at"] is not None or stale:
                return Lease(r["owner"], expires, beat)
        return None

    def _requeued_txn(self, tx: Tx, expired: list[Row], due: float | None = None) -> Recovered:
        """After ``expired`` items were re-queued: count their runs' recoveries, crash
        the runs past their limit, wake the workers (at ``due``, when the last item comes
        due, or now)."""
        run_ids = sorted({r["run_id"] for r in expired})
        tx.exec("count_recoveries", {"ids": run_ids})
        crashed: list[str] = []
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
            after_run_end(tx, row["id"], RunStatus.CRASHED.value)
            crashed.append(row["id"])
        # Workers look again when the last of them comes due (they wait a backoff).
        tx.announce_wake(due)
        return Recovered(run_ids, crashed)
