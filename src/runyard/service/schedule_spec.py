"""What a schedule is, as the service takes and gives it: :class:`ScheduleSpec` (in),
:class:`Schedule`, :class:`ScheduleFire` and :class:`Backfill` (out). The rules are told
in :mod:`runyard.service.schedules`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..engine.registry import FlowControl
from ..models import RunStatus
from ..rules import invalid


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
        """As stored (JSON-able): ``at`` in epoch seconds, ``flow_control`` as a dict."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "at" and isinstance(value, datetime):
                value = value.timestamp()
            elif f.name == "flow_control" and value is not None:
                value = {
                    "key": value.key,
                    "parallelism": value.parallelism,
                    "rate": value.rate,
                    "period": value.period,
                }
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        """The spec :meth:`to_dict` stored (fields it does not know are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        fc = values.get("flow_control")
        if isinstance(fc, dict):
            values["flow_control"] = FlowControl(**fc)
        return cls(**values)

    @property
    def at_s(self) -> float | None:
        """``at`` in epoch seconds."""
        at = self.at
        return at.timestamp() if isinstance(at, datetime) else at


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


def fire_time(run_id: str) -> float:
    """The fire time (to the millisecond) of a fire's run id (see :func:`fire_run_id`)."""
    return int(run_id.rsplit("@", 1)[1]) / 1000


def spec_changes(spec: ScheduleSpec, changes: Mapping[str, Any]) -> ScheduleSpec:
    """``spec`` with ``changes`` (field name -> new value) applied; an unknown field is
    refused (422 naming it)."""
    names = {f.name for f in dataclasses.fields(ScheduleSpec)}
    for name in changes:
        if name not in names:
            raise invalid(name, f"{name!r} is not a field of a schedule", "unknown field")
    return dataclasses.replace(spec, **dict(changes))
