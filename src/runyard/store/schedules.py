"""Schedules and their fires (mixed into :class:`~runyard.store.base.Store`): the rows;
the rules of firing live in :mod:`runyard.service.scheduler`, which calls these inside
its transactions. One row per (schedule, fire time) in ``schedule_fires``: a second
insert of the same fire inserts nothing, whichever process tries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import jsonutil
from ..errors import NotFound
from ..models import NewRun
from .tx import Row, Tx

#: Announced (on the channel of stopped runs, which every process hears) when schedules
#: change: schedulers look at their due times again. No run id looks like it.
SCHEDULES_CHANGED = "!schedules"


def _exact(values: Mapping[str, Any], *times: str) -> dict[str, Any]:
    """``values`` with each of ``times`` also given as the integers of its ratio
    (``<name>_n`` over ``<name>_d``, a power of two), for SQL that reads a list from JSON:
    a fire time is part of a key, and SQLite reads a JSON number only to about the nearest
    double, the integers exactly."""
    out = dict(values)
    for name in times:
        at = values[name]
        n, d = (None, None) if at is None else float(at).as_integer_ratio()
        out[f"{name}_n"], out[f"{name}_d"] = n, d
    return out


def announce_schedules(tx: Tx) -> None:
    """After commit, wake every process's scheduler (a due time may have moved)."""
    tx.announce_run(SCHEDULES_CHANGED, stop=True)


class SchedulesStoreMixin:
    """The SQL of schedules (``*_schedule*``, ``*fire*`` queries of each backend)."""

    if TYPE_CHECKING:  # (runyard.store.base.Store, which this is mixed into)

        def create_run_txn(self, tx: Tx, run: NewRun) -> Any: ...

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

    def peek_due_schedules(self, tx: Tx, limit: int, ahead: float = 0.0) -> list[Row]:
        """The schedules due now or within ``ahead`` seconds (database clock), earliest
        first, not locked: ``id``, ``workflow``, ``task_id``, ``spec``."""
        return tx.q("peek_due_schedules", {"limit": limit, "ahead": ahead})

    def existing_fires(
        self, tx: Tx, bounds: Sequence[tuple[str, float]], until: float
    ) -> set[tuple[str, float]]:
        """The (schedule, fire time) recorded for each ``(schedule id, from)`` of
        ``bounds`` with a fire time in ``[from, until]``."""
        if not bounds:
            return set()
        # (from a millisecond earlier: a bound read from JSON may differ in its last bit)
        param = jsonutil.dumps([{"id": sid, "lo": lo - 0.001} for sid, lo in bounds])
        rows = tx.q("existing_fires", {"bounds": param, "hi": until})
        return {(str(r["schedule_id"]), float(r["fire_at"])) for r in rows}

    def record_fires_txn(self, tx: Tx, fires: Sequence[Mapping[str, Any]]) -> None:
        """Insert fire rows (``schedule_id, fire_at, kind, state, run_id, error``) known to
        be new (a row already there is left as it is), in one statement."""
        if fires:
            rows = [_exact(f, "fire_at") for f in fires]
            tx.send("record_fires", {"fires": jsonutil.dumps(rows)})

    def advance_schedules_txn(self, tx: Tx, values: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`advance_schedule_txn` for each of ``values``, in one statement."""
        if values:
            rows = [_exact(v, "next_fire_at", "due_at") for v in values]
            tx.send("advance_schedules", {"schedules": jsonutil.dumps(rows)})

    def create_fire_runs_txn(self, tx: Tx, runs: Sequence[NewRun]) -> None:
        """Create the runs of fires in the transaction that records them (an id that
        exists already is left as it is: a fire starts one run)."""
        # (PostgreSQL inserts runs of a group in one statement; SQLite one by one, in the
        # same process, costs about as much)
        many = getattr(self, "create_runs_txn", None)
        if many is not None:
            many(tx, runs)
            return
        for run in runs:
            self.create_run_txn(tx, run)

    def purge_runless_fires_txn(self, tx: Tx, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` fires with no run (skipped, missed, failed to start)
        recorded before ``cutoff``, oldest first; how many were deleted. (A fire with a
        run goes with its run, see :mod:`runyard.store.retention`.)"""
        return tx.exec("purge_runless_fires", {"cutoff": cutoff, "limit": limit})

    def run_status(self, tx: Tx, run_id: str) -> str | None:
        row = tx.q1("schedule_run_status", {"id": run_id})
        return str(row["status"]) if row is not None else None

    def advance_schedule_txn(self, tx: Tx, values: Mapping[str, Any]) -> None:
        tx.exec("advance_schedule", values)

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

    def skip_pending_fire_txn(
        self, tx: Tx, schedule_id: str, fire_at: float, run_id: str, stale_s: float
    ) -> bool:
        """Skip the fire at about ``fire_at`` (to the millisecond) of run ``run_id`` if it
        has been pending for over ``stale_s`` seconds and that run was never written;
        whether it was."""
        params = {
            "schedule_id": schedule_id,
            "lo": fire_at - 0.001,
            "hi": fire_at + 0.001,
            "run_id": run_id,
            "stale_s": stale_s,
        }
        return tx.q1("skip_pending_fire", params) is not None

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
