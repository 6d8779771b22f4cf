"""What clients do to runs (mixed into :class:`~runyard.store.base.Store`): cancel,
pause, resume, continue and fork, each applying only where the run's status allows it
(``CLIENT_TRANSITIONS``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import jsonutil
from ..errors import IllegalTransition, InvalidInput, RunNotFound
from ..models import CLIENT_TRANSITIONS, RunStatus
from ..telemetry import OPTION
from .records import RunFilter
from .tx import Row, Tx


def existing_run(tx: Tx, run_id: str) -> Row:
    """The row of run ``run_id``, which exists (an insert found its id taken)."""
    row = tx.q1("get_run", {"id": run_id})
    assert row is not None
    return row


class ControlMixin:
    """Client transitions of runs."""

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

    def run_traces(self, tx: Tx, ids: Sequence[str]) -> list[tuple[str, str, Any, Any]]:
        """Each of runs ``ids`` (a bounded batch) that exists: its id, workflow, stored
        options and error (both parsed), for the run span of a run that just ended."""
        return [
            (r["id"], r["workflow"], jsonutil.loads(r["options"]), jsonutil.loads(r["error"]))
            for r in tx.q("run_traces", {"ids": list(ids)})
        ]

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
        tx.exec("drop_unfinished_sync_states", {"run_id": run_id})
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
        trace: dict[str, Any] | None = None,
    ) -> tuple[Row, bool]:
        """A new run of the same workflow that reuses ``source_id``'s checkpoints before
        ``position`` (from 1 to one past its last) and executes from there; ``(row,
        created)``. An existing ``new_id`` returns that run untouched (idempotent, however
        many forks with that id race). The fork keeps the source's options but its trace
        context: ``trace`` is its own (None: none)."""
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
                "options": jsonutil.dumps(_retraced_options(src["options"], trace)),
            },
        )
        if inserted is None:
            return existing_run(tx, new_id), False
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
        tx.exec("recount_outputs", {"run_id": new_id})
        tx.announce_wake()
        row = tx.q1("get_run", {"id": new_id})
        assert row is not None
        return row, True


def _retraced_options(stored: str | None, trace: dict[str, Any] | None) -> dict[str, Any]:
    """A run's stored options with ``trace`` as its trace context (removed when None)."""
    options = {k: v for k, v in (jsonutil.loads(stored) or {}).items() if k != OPTION}
    if trace is not None:
        options[OPTION] = trace
    return options
