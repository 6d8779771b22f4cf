"""Schedules (SPEC §5 schedule mode, §6 incremental sync across fires): what a front door
asks of them. The scheduler loop that fires them is :mod:`runyard.service.scheduler`.

A schedule is a cron expression (5 fields, or 6 with a leading seconds field; an IANA
timezone) or a one-off ``at`` time, and what each fire starts: a workflow with its input,
or a stored task (``task_id``), with run options. Each fire time has one row in
``schedule_fires`` (unique per schedule and fire time) and starts at most one run, whose
id is derived from the schedule and the fire time (:func:`fire_run_id`): however many
processes run the scheduler, a fire happens once.

Rules (constants in :mod:`runyard.rules`):

* Catch-up window (``catchup_window``, default :data:`~runyard.rules.CATCHUP_DEFAULT_S`
  = 60 s, at least :data:`~runyard.rules.CATCHUP_MIN_S` = 10 s): after downtime, missed
  fires younger than the window still fire (in order, under the overlap policy); older
  ones are recorded as ``missed`` and never run.
* Overlap policy (``overlap``), when the schedule's previous run has not ended:
  ``skip`` (default: the fire is recorded as ``skipped``), ``buffer_one`` (one fire waits
  and starts when the previous run ends; further ones are skipped), ``buffer_all`` (every
  fire waits, started one after another), ``cancel_other`` (the previous run is canceled,
  the fire starts), ``allow_all`` (the fire starts anyway).
* ``pause_on_failure``: a fire's run that ends FAILED, CRASHED or INVALID pauses the
  schedule (with a note naming the run) before its next fire.
* ``remaining_actions``: fires (cron or ``at``) left before the schedule stops firing; None
  for no limit. Triggers and backfills do not count.
* ``jitter``: each fire happens up to this many seconds after its time (the same offset
  for a given fire, whichever process fires it).
* DST (as croniter computes it): a wall-clock time skipped by a spring change fires once
  at the next valid time (02:30 -> 03:00); a wall-clock time repeated by an autumn change
  fires once (its first occurrence).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .. import jsonutil
from ..errors import InvalidInput, NotFound, WorkflowNotFound
from ..models import RunStatus
from ..rules import (
    BACKFILL_MAX_FIRES,
    CATCHUP_MIN_S,
    OVERLAP_POLICIES,
    RUN_ID_RE,
    SCHEDULE_ID_MAX,
    check_choice,
    check_int,
    invalid,
)
from ..schemas import finite
from ..store.schedules import announce_schedules
from ..store.tx import Row, Tx
from .catalog import CatalogMixin
from .control import ControlMixin
from .cron import Cron, cron_of, jitter_offset, zone
from .schedule_spec import (
    Backfill,
    Schedule,
    ScheduleFire,
    ScheduleSpec,
    fire_run_id,
    spec_changes,
)
from .scheduler import FAILED, FireBook, FireStart, Firing, Scheduler
from .starting import StartRequest

#: Shown with a schedule: its next fire times and its latest fires.
SHOWN = 10
#: Fire records without a run deleted per transaction by a purge.
FIRES_PURGE_BATCH = 500


def _fire(row: Row) -> ScheduleFire:
    status = row["run_status"]
    return ScheduleFire(
        schedule_id=row["schedule_id"],
        fire_at=row["fire_at"],
        kind=row["kind"],
        state=row["state"],
        run_id=row["run_id"],
        run_status=RunStatus(status) if status is not None else None,
        error=jsonutil.loads(row["error"]),
        created_at=row["created_at"],
    )


def _schedule(row: Row, failed: int = 0, **extra: Any) -> Schedule:
    spec = ScheduleSpec.from_dict(jsonutil.loads(row["spec"]))
    paused = bool(row["paused"])
    return Schedule(
        id=row["id"],
        spec=spec,
        paused=paused,
        note=row["note"],
        next_fire_at=None if paused else row["next_fire_at"],
        remaining_actions=row["remaining_actions"],
        fired=row["fired"],
        skipped=row["skipped"],
        failed=row["start_failed"] + failed,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        **extra,
    )


def _first_fire(spec: ScheduleSpec, now: float) -> float | None:
    """The first fire time after ``now``."""
    if spec.cron is not None:
        return cron_of(spec.cron, spec.timezone).next_after(now)
    at = spec.at_s
    return at if at is not None and at > now else None


def _due(schedule_id: str, spec: ScheduleSpec, next_fire_at: float | None) -> float | None:
    if next_fire_at is None:
        return None
    return next_fire_at + jitter_offset(schedule_id, next_fire_at, spec.jitter)


def _epoch(value: datetime | float, field: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise invalid(field, f"{field} needs a timezone (an aware datetime)", "naive time")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(field, f"{field} must be a time (epoch seconds)", "not a time")
    return float(finite(float(value), field, minimum=None))


class SchedulesMixin(ControlMixin, CatalogMixin):
    """Schedules: create, read, list, update, pause, resume, delete, trigger, backfill.
    Errors: :class:`~runyard.errors.InvalidInput` (422) naming the field (``cron``,
    ``timezone``, ``at``, ``catchup_window``, ``workflow``, ``task_id``, ``overlap``,
    ...); :class:`~runyard.errors.NotFound` (404) for an unknown schedule id."""

    # -- checks ---------------------------------------------------------------------------

    async def check_schedule(self, spec: ScheduleSpec, *, new_at: bool = True) -> ScheduleSpec:
        """``spec`` checked field by field (422 naming the first bad one), ``at`` as
        epoch seconds; ``new_at``: an ``at`` must be in the future."""
        if (spec.cron is None) == (spec.at is None):
            raise invalid("cron", "give cron or at (one of them)", "cron or at required")
        zone(spec.timezone)
        if spec.cron is not None:
            Cron(spec.cron, spec.timezone)
        at = spec.at_s if spec.at is None else _epoch(spec.at, "at")
        if at is not None and new_at and at <= time.time():
            raise invalid("at", "at is in the past: give a future time", "in the past")
        check_choice(spec.overlap, "overlap", OVERLAP_POLICIES)
        window = finite(spec.catchup_window, "catchup_window", maximum=366 * 86400.0)
        if window is None or window < CATCHUP_MIN_S:
            raise invalid(
                "catchup_window",
                f"catchup_window must be at least {CATCHUP_MIN_S:g} seconds",
                f"below {CATCHUP_MIN_S:g} s",
            )
        jitter = finite(spec.jitter, "jitter", minimum=0.0, maximum=86400.0)
        check_int(spec.remaining_actions, "remaining_actions", 0, 2**31 - 1)
        for name in ("pause_on_failure", "paused"):
            if not isinstance(getattr(spec, name), bool):
                raise invalid(name, f"{name} must be true or false", "not a boolean")
        if spec.note is not None and (not isinstance(spec.note, str) or len(spec.note) > 1000):
            raise invalid("note", "note must be text of at most 1000 characters", "too long")
        cb = spec.callback
        if cb is not None and (not isinstance(cb, dict) or not isinstance(cb.get("url"), str)):
            raise invalid("callback", "callback must be {url, headers}", "no url")
        jsonutil.dumps(cb, what="callback")
        if spec.workflow is None and spec.task_id is None:
            raise invalid("workflow", "give workflow or task_id", "workflow or task_id required")
        spec = dataclasses.replace(spec, at=at, catchup_window=window, jitter=jitter or 0.0)
        try:
            await self.new_run(await self.fire_request(spec, "sch_check", None))
        except WorkflowNotFound as exc:
            raise InvalidInput(exc.message, details=exc.details) from None
        except NotFound as exc:  # (the task)
            raise invalid("task_id", exc.message, "unknown task") from None
        return spec

    async def fire_request(
        self, spec: ScheduleSpec, schedule_id: str, run_id: str | None
    ) -> StartRequest:
        """The run a fire of ``spec`` starts: its workflow and input, or its task's
        (overridden by the options and input given here)."""
        options = {
            "priority": spec.priority,
            "retries": spec.retries,
            "timeout": spec.timeout,
            "sync_mode": spec.sync_mode,
            "max_results": spec.max_results,
        }
        if spec.task_id is not None:
            overrides: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
            if spec.flow_control is not None:
                fc = spec.flow_control
                overrides["flow_control"] = {
                    "key": fc.key,
                    "parallelism": fc.parallelism,
                    "rate": fc.rate,
                    "period": fc.period,
                }
            try:
                req = await self.task_request(
                    spec.task_id, overrides, input=spec.input, input_given=spec.input is not None
                )
            except NotFound:
                raise invalid("task_id", f"no task {spec.task_id!r}", "unknown task") from None
            if spec.workflow is not None and spec.workflow != req.workflow:
                raise invalid(
                    "workflow",
                    f"task {spec.task_id!r} is a task of workflow {req.workflow!r}",
                    "not the task's workflow",
                )
            # (the schedule's own callback, else the task's)
            callback = spec.callback if spec.callback is not None else req.callback
            return dataclasses.replace(
                req, run_id=run_id, schedule_id=schedule_id, callback=callback
            )
        assert spec.workflow is not None
        return StartRequest(
            workflow=spec.workflow,
            input=spec.input,
            run_id=run_id,
            priority=spec.priority,
            flow_control=spec.flow_control,
            retries=spec.retries,
            timeout=spec.timeout,
            sync_mode=spec.sync_mode,
            max_results=spec.max_results,
            schedule_id=schedule_id,
            callback=spec.callback,
        )

    # -- records --------------------------------------------------------------------------

    async def create_schedule(
        self, spec: ScheduleSpec, *, schedule_id: str | None = None
    ) -> tuple[Schedule, bool]:
        """Create a schedule; ``(schedule, created)``. An existing ``schedule_id`` answers
        with the stored schedule (created False), as a ``run_id`` does."""
        store = self.core.store
        if schedule_id is not None:
            if (
                not isinstance(schedule_id, str)
                or len(schedule_id) > SCHEDULE_ID_MAX
                or not RUN_ID_RE.match(schedule_id)
            ):
                raise invalid(
                    "schedule_id",
                    f"schedule_id must be 1-{SCHEDULE_ID_MAX} letters, digits or ._:+=- "
                    "(starting with a letter or digit)",
                    "invalid id",
                )
            try:
                return await self.get_schedule(schedule_id), False
            except NotFound:
                pass
        spec = await self.check_schedule(spec)
        sid = schedule_id or f"sch_{secrets.token_hex(8)}"
        nxt = _first_fire(spec, time.time())
        values = {
            "id": sid,
            "workflow": spec.workflow,
            "task_id": spec.task_id,
            "spec": jsonutil.dumps(spec.to_dict()),
            "paused": spec.paused,
            "note": spec.note,
            "next_fire_at": nxt,
            "due_at": _due(sid, spec, nxt),
            "remaining_actions": spec.remaining_actions,
        }
        row, created = await self.core.write(store.insert_schedule_txn, values)
        return await self.get_schedule(row["id"]), created

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule with its next 10 fire times and last 10 fires."""
        store = self.core.store

        def read(tx: Tx) -> tuple[Row, list[Row], int]:
            row = store.get_schedule_row(tx, schedule_id)
            fires = store.recent_fires(tx, schedule_id, SHOWN)
            return row, fires, store.schedule_failed_runs(tx, schedule_id)

        row, fires, failed = await self.core.read(read)
        base = _schedule(row, failed)
        nexts: list[float] = []
        nxt = base.next_fire_at
        count = SHOWN if base.remaining_actions is None else min(SHOWN, base.remaining_actions)
        if nxt is not None and count > 0:
            nexts = [nxt]
            if base.spec.cron is not None:
                nexts += cron_of(base.spec.cron, base.spec.timezone).next_times(nxt, count - 1)
        return dataclasses.replace(base, next_fires=nexts, recent_fires=[_fire(r) for r in fires])

    async def list_schedules(
        self, *, cursor: str | None = None, limit: int = 50, workflow: str | None = None
    ) -> tuple[list[Schedule], str | None]:
        """Schedules by id, ``limit`` (1-100) from after ``cursor``; ``(page, next
        cursor)``, the cursor None on the last page."""
        check_int(limit, "limit", 1, 100)
        rows = await self.core.read(self.core.store.list_schedule_rows, cursor, limit + 1, workflow)
        page = [_schedule(r) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    async def _change(self, schedule_id: str, fn: Any, *args: Any) -> Schedule:
        """``fn(tx, row, *args) -> values for update_schedule`` on the locked row."""
        store = self.core.store

        def txn(tx: Tx) -> Row:
            row = store.lock_schedule_txn(tx, schedule_id)
            values = fn(tx, row, *args)
            if values is None:
                return row
            return store.update_schedule_txn(tx, {**_values(row), **values})

        await self.core.write(txn)
        return await self.get_schedule(schedule_id)

    async def update_schedule(self, schedule_id: str, changes: Mapping[str, Any]) -> Schedule:
        """Change fields of the spec (names as :class:`ScheduleSpec`'s, e.g. ``{"cron":
        "0 10 * * *"}``); takes effect from the next fire (one already started runs as
        it was). A new cron, ``at`` or timezone recomputes the next fire time from now."""
        current = await self.get_schedule(schedule_id)
        old = current.spec
        new = spec_changes(old, changes)
        if "cron" in changes and changes["cron"] is not None and "at" not in changes:
            new = dataclasses.replace(new, at=None)
        if "at" in changes and changes["at"] is not None and "cron" not in changes:
            new = dataclasses.replace(new, cron=None)
        if "task_id" in changes and changes["task_id"] is not None and "workflow" not in changes:
            new = dataclasses.replace(new, workflow=None)
        timing = any(k in changes for k in ("cron", "at", "timezone"))
        new = await self.check_schedule(new, new_at="at" in changes)

        def apply(tx: Tx, row: Row) -> dict[str, Any]:
            now = store.now(tx)
            nxt = _first_fire(new, now) if timing else row["next_fire_at"]
            remaining = row["remaining_actions"]
            if "remaining_actions" in changes:
                remaining = new.remaining_actions
            paused = new.paused if "paused" in changes else bool(row["paused"])
            note = new.note if "note" in changes else row["note"]
            if remaining is not None and remaining <= 0:
                nxt = None
            return {
                "workflow": new.workflow,
                "task_id": new.task_id,
                "spec": jsonutil.dumps(new.to_dict()),
                "paused": paused,
                "note": note,
                "next_fire_at": nxt,
                "due_at": _due(schedule_id, new, nxt),
                "remaining_actions": remaining,
            }

        store = self.core.store
        return await self._change(schedule_id, apply)

    async def pause_schedule(self, schedule_id: str, note: str | None = None) -> Schedule:
        """Stop firing until resumed; ``note`` says why (shown with the schedule)."""
        _check_note(note)
        return await self._change(schedule_id, lambda tx, row: {"paused": True, "note": note})

    async def resume_schedule(self, schedule_id: str, note: str | None = None) -> Schedule:
        """Fire again, from the next fire time after now (fires missed while paused are
        not made up)."""
        _check_note(note)
        store = self.core.store

        def resume(tx: Tx, row: Row) -> dict[str, Any] | None:
            spec = ScheduleSpec.from_dict(jsonutil.loads(row["spec"]))
            now = store.now(tx)
            remaining = row["remaining_actions"]
            nxt = _first_fire(spec, now)
            if spec.cron is None and row["next_fire_at"] is None:
                nxt = None  # (a one-off that fired)
            if remaining is not None and remaining <= 0:
                nxt = None
            last = row["last_run_id"]
            if last is not None:
                status = store.run_status(tx, last)
                if status is not None and RunStatus(status) in FAILED:
                    # (the failure that paused it is acknowledged: it pauses no more)
                    store.advance_schedule_txn(tx, {**_advance(row), "last_run_id": None})
            return {
                "paused": False,
                "note": note,
                "next_fire_at": nxt,
                "due_at": _due(row["id"], spec, nxt),
            }

        return await self._change(schedule_id, resume)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule and its fire records; its runs stay (their
        ``schedule_id`` still names it)."""
        await self.core.write(self.core.store.delete_schedule_txn, schedule_id)

    # -- fires ----------------------------------------------------------------------------

    async def trigger_schedule(
        self, schedule_id: str, *, overlap: str | None = None
    ) -> ScheduleFire:
        """Fire now (also when paused), under ``overlap`` (default: the schedule's)."""
        if overlap is not None:
            check_choice(overlap, "overlap", OVERLAP_POLICIES)
        store = self.core.store

        def txn(tx: Tx) -> tuple[list[FireStart], float]:
            f = _firing(store, tx, schedule_id)
            now = round(store.now(tx), 3)
            while f.fire(now, "trigger", overlap or f.spec.overlap) is None:
                now = round(now + 0.001, 3)  # (a fire of that very millisecond exists)
            _keep(f, now)
            return f.book.flush(), now

        starts, at = await self.core.write(txn)
        await Scheduler(self).start(starts)
        row = await self.core.read(store.get_fire, schedule_id, at)
        assert row is not None
        return _fire(row)

    async def backfill_schedule(
        self,
        schedule_id: str,
        start: datetime | float,
        end: datetime | float,
        *,
        overlap: str | None = None,
    ) -> Backfill:
        """Fire every fire time of ``[start, end)`` (both in the past; at most
        :data:`~runyard.rules.BACKFILL_MAX_FIRES`), under ``overlap`` (default
        ``buffer_all``: one after another). Asking again for the same range starts
        nothing new."""
        policy = overlap or "buffer_all"
        check_choice(policy, "overlap", OVERLAP_POLICIES)
        lo, hi = _epoch(start, "start"), _epoch(end, "end")
        if hi <= lo:
            raise invalid("end", "end must be after start", "not after start")
        if hi > time.time() + 1:
            raise invalid(
                "end", "a backfill covers past fire times: end is in the future", "in the future"
            )
        spec = (await self.get_schedule(schedule_id)).spec
        if spec.cron is not None:
            cron = cron_of(spec.cron, spec.timezone)
            times: list[float] = []
            at = cron.next_after(lo - 1e-6)
            while at < hi:
                times.append(at)
                if len(times) > BACKFILL_MAX_FIRES:
                    raise invalid(
                        "end",
                        f"the range holds more than {BACKFILL_MAX_FIRES} fire times: "
                        "backfill it in parts",
                        "too many fires",
                    )
                at = cron.next_after(at)
        else:
            at_s = spec.at_s
            times = [at_s] if at_s is not None and lo <= at_s < hi else []
        store = self.core.store

        def txn(tx: Tx) -> tuple[list[FireStart], int]:
            f = _firing(store, tx, schedule_id)
            created = sum(1 for t in times if f.fire(t, "backfill", policy) is not None)
            _keep(f, store.now(tx))
            return f.book.flush(), created

        starts, created = await self.core.write(txn, inline=False)
        await Scheduler(self).start(starts)
        rows = await self.core.read(store.fires_between, schedule_id, lo, hi)
        return Backfill(
            fires=[_fire(r) for r in rows], created=created, existing=len(times) - created
        )

    async def purge_schedule_fires(
        self,
        older_than_days: float | None = None,
        *,
        batch: int = FIRES_PURGE_BATCH,
        max_batches: int | None = None,
    ) -> int:
        """Delete the fire records that have no run (skipped, missed, failed to start)
        recorded more than ``older_than_days`` ago (default ``RUNYARD_RETENTION_DAYS``, the
        retention of runs; a fire with a run is deleted with its run), ``batch`` a
        transaction, at most ``max_batches`` (None: until none is left); how many were
        deleted. Every scheduler runs it now and then (no leader: deletes are idempotent)."""
        core = self.core
        store = core.store
        days = core.settings.retention_days if older_than_days is None else older_than_days
        finite(days, "older_than_days")
        check_int(batch, "batch", 1, 100_000)
        cutoff = await core.read(store.now, inline=True) - days * 86400
        total, rounds = 0, 0
        while max_batches is None or rounds < max_batches:
            started = time.monotonic()
            n = await core.write(store.purge_runless_fires_txn, cutoff, batch, inline=False)
            total, rounds = total + n, rounds + 1
            if n < batch:
                break
            # (SQLite has one writer: claims and checkpoints get the lock in between)
            await asyncio.sleep((time.monotonic() - started) * store.purge_rest)
        return total

    async def next_fire_times(
        self, cron: str, timezone: str = "UTC", count: int = 10, after: float | None = None
    ) -> list[float]:
        """The next ``count`` fire times of ``cron`` after ``after`` (default now): a
        preview, validated as a schedule's cron is."""
        check_int(count, "count", 1, 1000)
        return Cron(cron, timezone).next_times(time.time() if after is None else after, count)


def _check_note(note: str | None) -> None:
    if note is not None and (not isinstance(note, str) or len(note) > 1000):
        raise invalid("note", "note must be text of at most 1000 characters", "too long")


def _values(row: Row) -> dict[str, Any]:
    """The columns update_schedule writes, as they are."""
    keys = ("id", "workflow", "task_id", "spec", "paused", "note", "next_fire_at", "due_at")
    return {**{k: row[k] for k in keys}, "remaining_actions": row["remaining_actions"]}


def _advance(row: Row) -> dict[str, Any]:
    """advance_schedule's parameters that change nothing."""
    return {
        "id": row["id"],
        "next_fire_at": row["next_fire_at"],
        "due_at": row["due_at"],
        "last_run_id": row["last_run_id"],
        "remaining_actions": row["remaining_actions"],
        "fired": 0,
        "skipped": 0,
        "failed": 0,
        "buffered": row["buffered"],
        "paused": bool(row["paused"]),
        "note": row["note"],
    }


def _firing(store: Any, tx: Tx, schedule_id: str) -> Firing:
    """The schedule locked, its fires booked one by one (each looked up as it comes)."""
    row = store.lock_schedule_txn(tx, schedule_id)
    last = row["last_run_id"]
    return Firing.of(FireBook(store, tx), row, store.run_status(tx, last) if last else None)


def _keep(f: Firing, now: float) -> None:
    """Save what a trigger or backfill changed, the schedule's timing as it was; the
    schedulers are told (a buffered fire is looked at again soon)."""
    announce_schedules(f.book.tx)
    row = f.row
    nxt = row["next_fire_at"]
    f.save(
        now,
        next_fire_at=nxt,
        remaining=row["remaining_actions"],
        paused=bool(row["paused"]),
        note=row["note"],
    )


__all__ = [
    "Backfill",
    "Schedule",
    "ScheduleFire",
    "ScheduleSpec",
    "SchedulesMixin",
    "fire_run_id",
    "spec_changes",
]
