"""Reads of runs and their parts (mixed into :class:`~runyard.store.base.Store`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from .. import jsonutil
from ..errors import InvalidInput, RunNotFound
from ..models import (
    Attempt,
    Item,
    LogLine,
    Output,
    Page,
    Run,
    RunCounts,
    RunStatus,
    StepRecord,
    Transition,
    Waiter,
)
from .records import (
    RUN_SORTS,
    RunFilter,
    cursor_decode,
    cursor_encode,
    item_from_row,
    run_from_row,
    sort_key,
    sorted_cursor_decode,
    sorted_cursor_encode,
    step_from_row,
)
from .tx import Tx


class ReadsMixin:
    """Every read of runs, items, steps, outputs and events."""

    def get_run(self, tx: Tx, run_id: str) -> Run:
        row = tx.q1("get_run", {"id": run_id})
        if row is None:
            raise RunNotFound(f"run {run_id!r} does not exist")
        return run_from_row(row)

    def _with_sole_inputs(self, tx: Tx, runs: list[Run]) -> list[Run]:
        """``runs`` with the input of each that has exactly one, read for the whole page
        in one statement (a page costs what it costs, not a query per run)."""
        sole = [r.id for r in runs if r.input_count == 1]
        if not sole:
            return runs
        inputs = {r["run_id"]: r["input"] for r in tx.q("sole_inputs", {"run_ids": sole})}
        return [
            dataclasses.replace(r, input=jsonutil.loads(inputs[r.id])) if r.id in inputs else r
            for r in runs
        ]

    def run_statuses(self, tx: Tx, run_ids: Sequence[str]) -> dict[str, str]:
        return {r["id"]: r["status"] for r in tx.q("run_statuses", {"ids": list(run_ids)})}

    def list_runs(
        self,
        tx: Tx,
        filt: RunFilter,
        cursor: str | None,
        limit: int,
        order: str = "desc",
        sort: str = "created_at",
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
        if sort not in RUN_SORTS:
            raise InvalidInput(
                f"sort must be one of {', '.join(RUN_SORTS)}",
                details=[{"field": "sort", "error": "|".join(RUN_SORTS)}],
            )
        if sort != "created_at":
            return self._list_runs_sorted(tx, filt, cursor, limit, order, sort)
        params = filt.params()
        after_at, after_id = cursor_decode(cursor) if cursor else (None, None)
        params.update({"after_at": after_at, "after_id": after_id, "limit": limit + 1})
        # The index walked: the schedule's or the task's, the workflow's (one walk per
        # status, every status when none is asked for), the statuses', or the creation
        # time's.
        if params["schedule_id"] is not None:
            name = "list_runs_by_schedule_"
        elif params["task_id"] is not None:
            name = "list_runs_by_task_"
        elif params["workflow"] is not None:
            params["statuses"] = params["statuses"] or [s.value for s in RunStatus]
            name = "list_runs_by_workflow_"
        elif params["statuses"]:
            name = "list_runs_by_status_"
        else:
            name = "list_runs_"
        rows = tx.q(name + order, params)
        runs = self._with_sole_inputs(tx, [run_from_row(r) for r in rows[:limit]])
        nxt = None
        if len(rows) > limit:
            nxt = cursor_encode(runs[-1].created_at, runs[-1].id)
        return Page(items=runs, next_cursor=nxt)

    def _list_runs_sorted(
        self, tx: Tx, filt: RunFilter, cursor: str | None, limit: int, order: str, sort: str
    ) -> Page:
        """A page sorted by ``sort`` (not ``created_at``); the cursor holds the whole
        sort key of the last run given, so no run is repeated or skipped."""
        after = sorted_cursor_decode(cursor, sort, order) if cursor else None
        params = filt.params()
        params.update(
            {
                "after_text": after.text if after else None,
                "after_num": after.num if after else None,
                "after_at": after.created_at if after else None,
                "after_id": after.run_id if after else None,
                "limit": limit + 1,
            }
        )
        key = sort.removesuffix("_at")  # status, started or finished
        rows = tx.q(f"runs_sorted_by_{key}_{order}", params)
        runs = self._with_sole_inputs(tx, [run_from_row(r) for r in rows[:limit]])
        nxt = None
        if len(rows) > limit:
            nxt = sorted_cursor_encode(sort, order, sort_key(runs[-1], sort))
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
        return [item_from_row(r) for r in rows]

    def get_steps(self, tx: Tx, run_id: str, iteration: int | None = None) -> list[StepRecord]:
        return [
            step_from_row(r) for r in tx.q("list_steps", {"run_id": run_id, "iteration": iteration})
        ]

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
                workflow_attempt=r["workflow_attempt"],
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

    def get_logs(self, tx: Tx, run_id: str, after_id: int = 0, limit: int = 100) -> list[LogLine]:
        """The run's log lines after ``after_id``, in the order they were written."""
        rows = tx.q("list_logs", {"run_id": run_id, "after_id": after_id, "limit": limit})
        return [
            LogLine(
                id=r["id"],
                run_id=r["run_id"],
                item_idx=r["item_idx"],
                iteration=r["iteration"],
                attempt=r["attempt"],
                level=r["level"],
                message=r["message"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    def run_counts(self, tx: Tx, after_transition: int | None) -> RunCounts:
        """Runs not ended, by status, and runs that ended since the transition
        ``after_transition`` (None: counting starts now), by status: what a metrics
        scrape reads, at a cost that does not grow with the history."""
        open_runs = {str(r["status"]): int(r["n"]) for r in tx.q("count_open_runs")}
        if after_transition is None:
            row = tx.q1("last_transition")
            return RunCounts(open_runs, {}, int(row["id"]) if row else 0)
        ended: dict[str, int] = {}
        last = after_transition
        for r in tx.q("transitions_since", {"after_id": after_transition}):
            last = max(last, int(r["last"]))
            if RunStatus(r["to_status"]).terminal:
                ended[str(r["to_status"])] = int(r["n"])
        return RunCounts(open_runs, ended, last)

    def has_due_work(self, tx: Tx, wrefs: Sequence[str]) -> bool:
        return tx.q1("has_due_work", {"wrefs": list(wrefs)}) is not None

    def now(self, tx: Tx) -> float:
        row = tx.q1("now")
        return float(row["now"]) if row else time.time()
