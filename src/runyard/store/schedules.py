"""Schedules and their fires (mixed into :class:`~runyard.store.base.Store`): the rows;
the rules of firing live in :mod:`runyard.service.scheduler`, which calls these inside
its transactions. One row per (schedule, fire time) in ``schedule_fires``: a second
insert of the same fire inserts nothing, whichever process tries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import NotFound
from .tx import Row, Tx

#: Announced (on the channel of stopped runs, which every process hears) when schedules
#: change: schedulers look at their due times again. No run id looks like it.
SCHEDULES_CHANGED = "!schedules"


def announce_schedules(tx: Tx) -> None:
    """After commit, wake every process's scheduler (a due time may have moved)."""
    tx.announce_run(SCHEDULES_CHANGED, stop=True)


class SchedulesStoreMixin:
    """The SQL of schedules (``*_schedule*``, ``*fire*`` queries of each backend)."""

    def insert_schedule_txn(self, tx: Tx, values: Mapping[str, Any]) -> tuple[Row, bool]:
        """``(row, created)``: an existing id answers with the stored row."""
        row = tx.q1("insert_schedule", values)
        if row is not None:
            announce_schedules(tx)
            return row, True
        return self.get_schedule_row(tx, str(values["id"])), False

    def get_schedule_row(self, tx: Tx, schedule_id: str) -> Row:
        row = tx.q1("get_schedule", {"id": schedule_id})
        if row is None:
            raise NotFound(f"no schedule {schedule_id!r}")
        return row

    def lock_schedule_txn(self, tx: Tx, schedule_id: str) -> Row:
        """The schedule's row, locked until the commit (PostgreSQL; SQLite's write
        transaction holds the database)."""
        row = tx.q1("lock_schedule", {"id": schedule_id})
        if row is None:
            raise NotFound(f"no schedule {schedule_id!r}")
        return row

    def list_schedule_rows(
        self, tx: Tx, after_id: str | None, limit: int, workflow: str | None
    ) -> list[Row]:
        return tx.q("list_schedules", {"after_id": after_id, "limit": limit, "workflow": workflow})

    def update_schedule_txn(self, tx: Tx, values: Mapping[str, Any]) -> Row:
        row = tx.q1("update_schedule", values)
        if row is None:
            raise NotFound(f"no schedule {values['id']!r}")
        announce_schedules(tx)
        return row

    def delete_schedule_txn(self, tx: Tx, schedule_id: str) -> None:
        if tx.q1("delete_schedule", {"id": schedule_id}) is None:
            raise NotFound(f"no schedule {schedule_id!r}")
        tx.exec("delete_schedule_fires", {"id": schedule_id})

    def claim_due_schedules_txn(self, tx: Tx, now: float, limit: int) -> list[Row]:
        """Up to ``limit`` schedules due at ``now``, earliest first, locked (others skip
        them on PostgreSQL), each with ``last_status``: its latest fire's run's status."""
        return tx.q("claim_due_schedules", {"now": now, "limit": limit})

    def run_status(self, tx: Tx, run_id: str) -> str | None:
        row = tx.q1("schedule_run_status", {"id": run_id})
        return str(row["status"]) if row is not None else None

    def advance_schedule_txn(self, tx: Tx, values: Mapping[str, Any]) -> None:
        tx.exec("advance_schedule", values)

    def insert_fire_txn(
        self,
        tx: Tx,
        schedule_id: str,
        fire_at: float,
        kind: str,
        state: str,
        run_id: str | None,
        error: str | None = None,
    ) -> bool:
        """Record a fire; False when that (schedule, fire time) already has its row."""
        row = tx.q1(
            "insert_fire",
            {
                "schedule_id": schedule_id,
                "fire_at": fire_at,
                "kind": kind,
                "state": state,
                "run_id": run_id,
                "error": error,
            },
        )
        return row is not None

    def set_fire_state_txn(
        self,
        tx: Tx,
        schedule_id: str,
        fire_at: float,
        state: str,
        run_id: str | None,
        error: str | None = None,
    ) -> None:
        tx.exec(
            "set_fire_state",
            {
                "schedule_id": schedule_id,
                "fire_at": fire_at,
                "state": state,
                "run_id": run_id,
                "error": error,
            },
        )

    def fires_started_txn(self, tx: Tx, fires: list[tuple[str, float]]) -> None:
        """Pending fires whose runs now exist."""
        for schedule_id, fire_at in fires:
            tx.exec("fire_started", {"schedule_id": schedule_id, "fire_at": fire_at})

    def fire_start_failed_txn(
        self, tx: Tx, schedule_id: str, fire_at: float, run_id: str, error: str
    ) -> None:
        """A pending fire whose run could not be started (counted once)."""
        params = {"schedule_id": schedule_id, "fire_at": fire_at, "error": error}
        if tx.q1("fire_start_failed", params) is not None:
            tx.exec("count_start_failed", {"id": schedule_id, "run_id": run_id})

    def first_buffered_fire(self, tx: Tx, schedule_id: str) -> Row | None:
        return tx.q1("first_buffered_fire", {"schedule_id": schedule_id})

    def stale_pending_fires(self, tx: Tx, before: float, limit: int) -> list[Row]:
        """Fires recorded pending before ``before`` (their scheduler stopped before
        writing their run), each with its schedule's ``spec``."""
        return tx.q("stale_pending_fires", {"before": before, "limit": limit})

    def get_fire(self, tx: Tx, schedule_id: str, fire_at: float) -> Row | None:
        return tx.q1("get_fire", {"schedule_id": schedule_id, "fire_at": fire_at})

    def recent_fires(self, tx: Tx, schedule_id: str, limit: int) -> list[Row]:
        """The latest ``limit`` fires, newest first, with their runs' statuses."""
        return tx.q("recent_fires", {"schedule_id": schedule_id, "limit": limit})

    def fires_between(self, tx: Tx, schedule_id: str, start: float, end: float) -> list[Row]:
        return tx.q("fires_between", {"schedule_id": schedule_id, "start": start, "end": end})

    def schedule_failed_runs(self, tx: Tx, schedule_id: str) -> int:
        row = tx.q1("schedule_failed_runs", {"schedule_id": schedule_id})
        return int(row["n"]) if row is not None else 0

    def next_schedule_due(self, tx: Tx) -> float | None:
        """The earliest time a schedule is due (None: none will be)."""
        row = tx.q1("next_schedule_due")
        return float(row["at"]) if row is not None and row["at"] is not None else None
