"""The writes of an executing item, all fenced (mixed into
:class:`~runyard.store.base.Store`): checkpoints, failed attempts, the item's outcome and
what follows it, hand-backs, event waits and notifies, fan-outs, progress and logs.

Fencing (RELIABILITY.md rule 1): every write a worker makes about an item carries the
worker id and the epoch it got when it claimed the item. A fence that matches no row
means another worker owns the item now; the write is dropped and the caller stops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .. import jsonutil
from ..models import ItemState, RunStatus
from .records import FAR_FUTURE, Checkpoint, CheckpointWrite, Fence, Outcome, WaitResult
from .tx import Later, Sent, Tx

#: The ends of a run that give it its on_failure item.
HOOKED_ENDS = frozenset({RunStatus.FAILED.value, RunStatus.CRASHED.value})


def send_fence(tx: Tx, f: Fence, position: int = 0) -> Sent:
    """Lock the item if ``f`` still owns it; the row answers the run's status (no row:
    fenced out). Statements sent after it in the transaction are guarded by the same
    condition, so they can travel in the same round trip."""
    return tx.send("fence", {**f.params(), "position": position})


def fence_status(tx: Tx, f: Fence, position: int = 0) -> str | None:
    """:func:`send_fence`, its answer awaited: the run's status, None when fenced out."""
    row = send_fence(tx, f, position).one()
    return row["status"] if row else None


def send_checkpoint(tx: Tx, f: Fence, iteration: int, cp: Checkpoint) -> None:
    """Record ``cp`` with its side effects (each statement fenced on its own)."""
    key = {**f.params(), "iteration": iteration, "position": cp.position}
    tx.send("upsert_step", {**key, **cp.step_columns()})
    if cp.output is not None:
        out_key, data = cp.output
        tx.send("insert_output", {**key, "key": out_key, "data": data})
    if cp.credit is not None:
        action, amount = cp.credit
        tx.send("insert_credit", {**key, "action": action, "amount": amount})
    if cp.sync_state is not None:
        tx.send("save_sync_state", {**key, "state": cp.sync_state})


def after_run_end(tx: Tx, run_id: str, status: str) -> None:
    """What follows the end of a run, in the transaction that ended it: a run that ended
    FAILED or CRASHED gets its on_failure item (once per failure: none is added while one
    is open) and the workers hear of new work; whoever waits on the run hears that it
    ended."""
    if status in HOOKED_ENDS:
        tx.exec("insert_hook_item", {"run_id": run_id})
        tx.announce_wake()
    tx.announce_run(run_id)


def status_after_outcome(ended: str | None, status: str) -> str:
    """A run's status after an item's outcome: the status the outcome ended it with, or
    the status it has (``ended`` None: the outcome did not end it)."""
    return ended if ended is not None else status


class ExecutionMixin:
    """Every write of a worker about an item it owns."""

    def checkpoint_txn(
        self, tx: Tx, f: Fence, iteration: int, cps: Sequence[Checkpoint]
    ) -> Later[str | None]:
        """Record checkpoints; the run's status, or None when fenced out (read once the
        commit is on its way: a fenced-out write changed nothing either way)."""
        fence = send_fence(tx, f, max(cp.position for cp in cps))
        for cp in cps:
            send_checkpoint(tx, f, iteration, cp)

        def status() -> str | None:
            row = fence.one()
            return row["status"] if row else None

        return Later(status)

    def checkpoint_many_txn(
        self, tx: Tx, writes: Sequence[CheckpointWrite]
    ) -> Later[list[str | None]]:
        """:meth:`checkpoint_txn` for several executions sharing a transaction."""
        each = [self.checkpoint_txn(tx, w.fence, w.iteration, w.checkpoints) for w in writes]
        return Later(lambda: [c.result() for c in each])

    def _checkpoint_jobs(
        self, tx: Tx, jobs: Sequence[tuple[Fence, int, Sequence[Checkpoint]]]
    ) -> Later[list[str | None]]:
        """:meth:`checkpoint_many_txn` of the arguments of ``checkpoint_txn`` jobs (see
        ``Store.merged_writes``)."""
        return self.checkpoint_many_txn(tx, [CheckpointWrite(*args) for args in jobs])

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
        status = fence_status(tx, f, 0)
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
        return self._outcome_txn(tx, Outcome(f, iteration, pending, state, result, error, sole))

    def _outcome_txn(self, tx: Tx, o: Outcome) -> str | None:
        """:meth:`complete_item_txn`, one statement after another, each answer awaited
        where the next depends on it."""
        f = o.fence
        # The run row is locked first, in a statement of its own, so that the finalize
        # statement's snapshot sees every other item of the run as committed.
        tx.send("lock_run", {"run_id": f.run_id})
        fence = send_fence(tx, f, o.position)
        for cp in o.pending:
            send_checkpoint(tx, f, o.iteration, cp)
        tx.send(
            "finish_item",
            {**f.params(), "state": o.state.value, "result": o.result, "error": o.error},
        )
        final = tx.send("finalize_run", {"run_id": f.run_id})
        row = fence.one()
        if row is None:
            return None
        done = final.one()
        ended = done["status"] if done else None
        self._after_outcome_txn(tx, o, ended)
        return status_after_outcome(ended, row["status"])

    def _after_outcome_txn(
        self, tx: Tx, o: Outcome, ended: str | None, *, decided: bool = True
    ) -> None:
        """What follows an item's outcome in its transaction, on every path that writes
        one: :func:`after_run_end` when the outcome ended the run (``ended``: the status
        it ended it with; None: it did not end it).

        ``decided=False``: the outcome's own statement ended the run if it was the last
        open input and gave it its on_failure item, and its answer comes only with the
        commit (PostgreSQL's outcomes, written together in one round trip with it). What
        it may have done is announced instead: the run, if it has ended by the time the
        announcement is sent (as it is, without asking, when the item is its run's only
        input); new work, if the outcome was no success (an on_failure item)."""
        run_id = o.fence.run_id
        if decided:
            if ended is not None:
                after_run_end(tx, run_id, ended)
            return
        if o.sole:
            tx.announce_run(run_id)
        else:
            tx.announce_run_end(run_id)
        if o.state is not ItemState.COMPLETED:
            tx.announce_wake()

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
        params = {**f.params(), "due_at": due_at, "waiting_for": waiting_for}
        tx.send("set_run_waiting", params)
        fence = send_fence(tx, f, max((cp.position for cp in pending), default=0))
        for cp in pending:
            send_checkpoint(tx, f, iteration, cp)
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
        began: float | None = None,
    ) -> WaitResult:
        """Resolve a wait for the first of ``event_ids`` stored since ``since``, until
        ``deadline`` (the wait's own) or ``run_deadline`` (its run's), whichever is first.
        ``began``: when the wait began (``since`` is that minus the lookback), what its
        waiters show as their ``since`` (``since`` itself when not given).

        Returns ``("event", (event_id, data))``, ``("timeout", None)`` (the wait's
        deadline passed), ``("run_timeout", None)`` (the run's deadline passed: the run
        is over, whatever the wait's), ``("suspended", None)`` after registering waiters
        and handing the item back until the earlier deadline, or ``("fenced", None)``.
        Sender and waiter meet on rows under one lock per event id, so a wake-up cannot be
        lost (RELIABILITY.md rule 5)."""
        tx.send("lock_run", {"run_id": f.run_id})  # (the run's row first, as in suspend_txn)
        status = fence_status(tx, f, position)
        if status is None:
            return WaitResult("fenced")
        for cp in pending:
            send_checkpoint(tx, f, iteration, cp)
        for event_id in sorted(event_ids):
            tx.q("lock_event", {"event_id": event_id})
        ev = tx.q1("first_event", {"event_ids": list(event_ids), "since": since})
        if ev is not None:
            tx.exec("delete_item_waiters", {"run_id": f.run_id, "idx": f.idx})
            return WaitResult("event", (ev["event_id"], jsonutil.loads(ev["data"])))
        now = tx.q1("now")
        assert now is not None
        if run_deadline is not None and now["now"] >= run_deadline:
            tx.exec("delete_item_waiters", {"run_id": f.run_id, "idx": f.idx})
            return WaitResult("run_timeout")
        if deadline is not None and now["now"] >= deadline:
            tx.exec("delete_item_waiters", {"run_id": f.run_id, "idx": f.idx})
            return WaitResult("timeout")
        for event_id in event_ids:
            tx.exec(
                "insert_waiter",
                {
                    "event_id": event_id,
                    "run_id": f.run_id,
                    "idx": f.idx,
                    "position": position,
                    "since": since if began is None else began,
                    "deadline": deadline,
                },
            )
        due_at = min(d for d in (deadline, run_deadline, FAR_FUTURE) if d is not None)
        params = {**f.params(), "due_at": due_at, "waiting_for": "event:" + ",".join(event_ids)}
        tx.exec("set_run_waiting", params)
        tx.exec("suspend_item", params)
        if due_at < FAR_FUTURE:
            tx.announce_wake(due_at)  # its timeout
        return WaitResult("suspended")

    def forget_waits_txn(self, tx: Tx, f: Fence) -> bool:
        """Drop the item's event waiters: it ends without its wait (its run timed out
        meanwhile), so no notify may count it as woken. False if fenced."""
        if fence_status(tx, f, 0) is None:
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
        status = fence_status(tx, f, position)
        if status is None:
            return None
        for cp in pending:
            send_checkpoint(tx, f, iteration, cp)
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
        send_checkpoint(tx, f, iteration, cp)
        return base

    def set_elements_txn(
        self, tx: Tx, f: Fence, updates: Sequence[tuple[int, str, str | None, str | None]]
    ) -> bool:
        """Record fan-out elements' states: ``(idx, state, result, error)`` each."""
        if fence_status(tx, f, 0) is None:
            return False
        for idx, state, result, error in updates:
            tx.exec(
                "set_element",
                {"run_id": f.run_id, "idx": idx, "state": state, "result": result, "error": error},
            )
        return True

    def progress_txn(self, tx: Tx, f: Fence, fraction: float | None, message: str | None) -> bool:
        if fence_status(tx, f, 0) is None:
            return False
        tx.exec("set_progress", {"run_id": f.run_id, "progress": fraction, "message": message})
        return True

    def emit_limited_txn(
        self, tx: Tx, f: Fence, iteration: int, cp: Checkpoint
    ) -> tuple[str, bool] | None:
        """Record the emit ``cp`` of a run with ``max_results``: its output is stored only
        while the run's iteration has stored fewer (the run's row is locked while it
        counts, so emits of its items take turns and the count never passes the limit);
        past it nothing is stored and the run is marked ``truncated``. The step records
        the answer (JSON true/false) for replays. Returns the run's status and whether
        the output was stored; None when fenced out."""
        status = fence_status(tx, f, cp.position)
        if status is None or cp.output is None:
            return None
        out_key, data = cp.output
        room = tx.q1("output_room", {"run_id": f.run_id})
        stored = bool(room is not None and room["room"])
        if stored:
            params = {**f.params(), "iteration": iteration, "position": cp.position}
            if tx.q1("insert_output_counted", {**params, "key": out_key, "data": data}):
                tx.exec("count_output", {"run_id": f.run_id})
        else:
            tx.exec("mark_truncated", {"run_id": f.run_id})
        step = dataclasses.replace(cp, output=None, result=jsonutil.dumps(stored))
        send_checkpoint(tx, f, iteration, step)
        return status, stored

    def log_txn(
        self, tx: Tx, f: Fence, iteration: int, attempt: int, level: str, message: str
    ) -> Later[bool]:
        """Store a line of the run's log; False (nothing stored) when fenced out (read
        once the commit is on its way: lines logged together share one round trip)."""
        params = {**f.params(), "iteration": iteration, "attempt": attempt}
        sent = tx.send("insert_log", {**params, "level": level, "message": message})
        return Later(lambda: sent.one() is not None)
