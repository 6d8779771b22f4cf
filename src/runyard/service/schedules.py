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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..engine.registry import FlowControl
from ..models import RunStatus
from .catalog import CatalogMixin
from .control import ControlMixin


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A schedule as created or updated. Give ``cron`` or ``at`` (not both), and
    ``workflow`` or ``task_id`` (with a task, the workflow and input are the task's unless
    given here; the run options given here override the task's)."""

    #: Cron expression: 5 fields, or 6 with a leading seconds field (``*/5 * * * * *``).
    cron: str | None = None
    #: A one-off fire time (aware datetime, or epoch seconds); must not be in the past.
    at: datetime | float | None = None
    #: IANA timezone the cron is read in (``Europe/Paris``).
    timezone: str = "UTC"
    workflow: str | None = None
    input: Any = None
    task_id: str | None = None
    # -- run options (as POST /v1/runs) --
    priority: int | None = None
    flow_control: FlowControl | None = None
    retries: int | None = None
    timeout: float | None = None
    sync_mode: str | None = None
    max_results: int | None = None
    #: ``{"url": ..., "headers": {...}}``: accepted and stored; delivered once callbacks land.
    callback: dict[str, Any] | None = None
    # -- firing rules --
    overlap: str = "skip"
    #: Seconds: missed fires younger than this still run after downtime (>= 10).
    catchup_window: float = 60.0
    pause_on_failure: bool = False
    #: Fires left (None: unlimited).
    remaining_actions: int | None = None
    #: Seconds: each fire happens up to this long after its time.
    jitter: float = 0.0
    #: Create the schedule paused (with ``note``).
    paused: bool = False
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As stored (JSON-able)."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ScheduleFire:
    """One fire time of a schedule and what became of it.

    ``kind``: ``cron`` (its cron or ``at``), ``trigger`` (trigger now) or ``backfill``.
    ``state``: ``pending`` (its run is being started), ``started`` (``run_id`` is its
    run), ``buffered`` (waits for the previous run to end), ``skipped`` (overlap policy),
    ``missed`` (older than the catch-up window), ``failed`` (its run could not be started:
    ``error``). ``run_status``: the run's status now, when it has one."""

    schedule_id: str
    fire_at: float
    kind: str
    state: str
    run_id: str | None
    run_status: RunStatus | None
    error: Any
    created_at: float

    @property
    def outcome(self) -> str:
        """The run's status once it has a run, else the fire's state."""
        return str(self.run_status) if self.run_status is not None else self.state


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as read: its spec, state and counters. ``next_fire_at``: the next fire
    time (None when it fires no more: paused, ``at`` passed, no remaining actions).
    ``next_fires`` (next 10 fire times) and ``recent_fires`` (last 10, newest first) are
    filled by :meth:`SchedulesMixin.get_schedule` only (empty in lists). Counters:
    ``fired`` (runs started), ``skipped`` (skipped or missed fires), ``failed`` (fires
    whose run ended FAILED, CRASHED or INVALID, or could not start)."""

    id: str
    spec: ScheduleSpec
    paused: bool
    note: str | None
    next_fire_at: float | None
    remaining_actions: int | None
    fired: int
    skipped: int
    failed: int
    created_at: float
    updated_at: float
    next_fires: list[float] = field(default_factory=list)
    recent_fires: list[ScheduleFire] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Backfill:
    """What a backfill did: every fire time of the range, with what became of it; fires
    that already existed (an earlier backfill, or the cron) are listed as they are and
    counted in ``existing``."""

    fires: list[ScheduleFire]
    created: int
    existing: int


def fire_run_id(schedule_id: str, fire_at: float) -> str:
    """The id of the run a fire starts: the schedule id and the fire time in
    milliseconds (``sch_ab12@1767225600000``), the same in every process."""
    return f"{schedule_id}@{round(fire_at * 1000)}"


def spec_changes(spec: ScheduleSpec, changes: Mapping[str, Any]) -> ScheduleSpec:
    """``spec`` with ``changes`` (field name -> new value) applied; an unknown field is
    refused (422 naming it)."""
    raise NotImplementedError


class SchedulesMixin(ControlMixin, CatalogMixin):
    """Schedules: create, read, list, update, pause, resume, delete, trigger, backfill.
    Errors: :class:`~runyard.errors.InvalidInput` (422) naming the field (``cron``,
    ``timezone``, ``at``, ``catchup_window``, ``workflow``, ``task_id``, ``overlap``,
    ...); :class:`~runyard.errors.NotFound` (404) for an unknown schedule id."""

    async def create_schedule(
        self, spec: ScheduleSpec, *, schedule_id: str | None = None
    ) -> tuple[Schedule, bool]:
        """Create a schedule; ``(schedule, created)``. An existing ``schedule_id`` answers
        with the stored schedule (created False), as a ``run_id`` does."""
        raise NotImplementedError

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule with its next 10 fire times and last 10 fires."""
        raise NotImplementedError

    async def list_schedules(
        self, *, cursor: str | None = None, limit: int = 50, workflow: str | None = None
    ) -> tuple[list[Schedule], str | None]:
        """Schedules by id, ``limit`` (1-100) from after ``cursor``; ``(page, next
        cursor)``, the cursor None on the last page."""
        raise NotImplementedError

    async def update_schedule(self, schedule_id: str, changes: Mapping[str, Any]) -> Schedule:
        """Change fields of the spec (names as :class:`ScheduleSpec`'s, e.g. ``{"cron":
        "0 10 * * *"}``); takes effect from the next fire (one already started runs as
        it was). A new cron, ``at`` or timezone recomputes the next fire time from now."""
        raise NotImplementedError

    async def pause_schedule(self, schedule_id: str, note: str | None = None) -> Schedule:
        """Stop firing until resumed; ``note`` says why (shown with the schedule)."""
        raise NotImplementedError

    async def resume_schedule(self, schedule_id: str, note: str | None = None) -> Schedule:
        """Fire again, from the next fire time after now (fires missed while paused are
        not made up)."""
        raise NotImplementedError

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule and its fire records; its runs stay (their
        ``schedule_id`` still names it)."""
        raise NotImplementedError

    async def trigger_schedule(
        self, schedule_id: str, *, overlap: str | None = None
    ) -> ScheduleFire:
        """Fire now (also when paused), under ``overlap`` (default: the schedule's)."""
        raise NotImplementedError

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
        raise NotImplementedError

    async def next_fire_times(
        self, cron: str, timezone: str = "UTC", count: int = 10, after: float | None = None
    ) -> list[float]:
        """The next ``count`` fire times of ``cron`` after ``after`` (default now): a
        preview, validated as a schedule's cron is."""
        raise NotImplementedError


__all__ = [
    "Backfill",
    "Schedule",
    "ScheduleFire",
    "ScheduleSpec",
    "SchedulesMixin",
    "fire_run_id",
    "spec_changes",
]

_ = dataclasses  # (used by the implementation)
