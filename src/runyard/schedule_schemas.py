"""Wire models of ``/v1/schedules`` (beside :mod:`runyard.schemas`, which holds the rest of
the OpenAPI contract): what the server reads and answers, the SDK parses and the CLI shows.

The rules JSON schema can state are stated here (the cron's shape, the catch-up window's
minimum, the overlap policies); those it cannot (a cron the library refuses, an unknown
time zone, an ``at`` in the past, an unknown workflow or task) are said in the
descriptions and answered with a 422 naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from .rules import CATCHUP_DEFAULT_S, CATCHUP_MIN_S, ID_MAX, INT32_MAX, SCHEDULE_ID_MAX
from .schemas import PAYLOAD_DOC, RUN_ID_PATTERN, RunCallback, RunOptions, _In

#: What happens to a fire while the schedule's previous run is still going
#: (:data:`runyard.rules.OVERLAP_POLICIES`).
Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]
#: A cron: 5 fields (minute hour day-of-month month day-of-week) or 6 (a seconds field
#: first), or a macro such as ``@daily``.
CRON_PATTERN = r"^\s*(@[A-Za-z]+|\S+(\s+\S+){4,5})\s*$"
CRON_DOC = (
    "5 fields (minute hour day-of-month month day-of-week, e.g. `0 9 * * 1-5`), or 6 with "
    "a seconds field first (`*/10 * * * * *`), or a macro (`@hourly`, `@daily`, ...), as "
    "croniter reads them; read in `timezone`. Give `cron` or `at`, not both"
)
TIMEZONE_DOC = (
    "An IANA time zone name (`Europe/Paris`, `UTC`): the cron is read in it. A time skipped "
    "by a daylight-saving change fires once at the next valid time; a repeated one fires once"
)
AT_DOC = "A one-off fire time, ISO 8601 (no zone: UTC), not in the past. Not with `cron`"
CATCHUP_DOC = (
    f"Seconds (at least {CATCHUP_MIN_S:g}; default {CATCHUP_DEFAULT_S:g}): after downtime, "
    "a missed fire younger than this still runs; older ones are recorded as missed, never "
    "replayed in a burst"
)
OVERLAP_DOC = (
    "When the schedule's previous run has not ended: `skip` the fire (default), "
    "`buffer_one` (one fire waits for the previous run to end, more are skipped), "
    "`buffer_all` (every fire waits, started one after another), `cancel_other` (the "
    "previous run is canceled), `allow_all` (the fire starts anyway)"
)
WORKFLOW_DOC = "The workflow each fire starts (a defined one). Give `workflow` or `task_id`"
TASK_DOC = (
    "A saved task each fire executes (an existing one): its workflow and input unless "
    "given here; the run options given here override the task's"
)


class CallbackIn(RunCallback):
    """Where the runs of the schedule report (docs/callbacks.md)."""

    url: str = Field(min_length=1, max_length=2048)
    headers: dict[str, str] = Field(default_factory=dict)


class _ScheduleRules(_In):
    overlap: Overlap = Field(default="skip", description=OVERLAP_DOC)
    catchup_window: float = Field(
        default=CATCHUP_DEFAULT_S, ge=CATCHUP_MIN_S, allow_inf_nan=False, description=CATCHUP_DOC
    )
    pause_on_failure: bool = Field(
        default=False, description="Pause the schedule when one of its runs fails"
    )
    remaining_actions: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Fires left before it stops firing (absent: no limit); triggers and "
        "backfills do not count",
    )
    jitter: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        description="Seconds: each fire happens up to this long after its time",
    )


class ScheduleIn(RunOptions, _ScheduleRules):
    """``POST /v1/schedules``: a workflow (with ``input``) or a task (``task_id``), fired on
    a ``cron`` or once ``at`` a time, with the run options of ``POST /v1/runs``."""

    id: str | None = Field(
        default=None,
        max_length=SCHEDULE_ID_MAX,
        pattern=RUN_ID_PATTERN,
        description="Your id for the schedule (default: chosen by the server): creating "
        "it again answers the stored schedule (200)",
    )
    workflow: str | None = Field(
        default=None, min_length=1, max_length=128, description=WORKFLOW_DOC
    )
    task_id: str | None = Field(default=None, min_length=1, max_length=ID_MAX, description=TASK_DOC)
    input: Any = Field(default=None, description=f"The input of each fire's run. {PAYLOAD_DOC}")
    cron: str | None = Field(
        default=None, max_length=200, pattern=CRON_PATTERN, description=CRON_DOC
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description=TIMEZONE_DOC)
    at: datetime | None = Field(default=None, description=AT_DOC)
    callback: CallbackIn | None = None
    paused: bool = Field(default=False, description="Create it paused")
    note: str | None = Field(default=None, max_length=1000, description="Why it is paused")


class SchedulePatch(RunOptions, _ScheduleRules):
    """``PATCH /v1/schedules/{id}`` (or ``POST .../update``): the fields given replace the
    stored ones, from the next fire on (a run already started goes on as it was); a new
    cron, ``at`` or timezone recomputes the next fire time from now. ``null`` clears a
    field that may be absent (``input``, ``remaining_actions``, a run option)."""

    workflow: str | None = Field(default=None, min_length=1, max_length=128)
    task_id: str | None = Field(default=None, min_length=1, max_length=ID_MAX)
    input: Any = Field(default=None, description=f"The new input. {PAYLOAD_DOC}")
    cron: str | None = Field(
        default=None, max_length=200, pattern=CRON_PATTERN, description=CRON_DOC
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description=TIMEZONE_DOC)
    at: datetime | None = Field(default=None, description=AT_DOC)
    callback: CallbackIn | None = None


class PauseIn(_In):
    note: str | None = Field(default=None, max_length=1000, description="Why (shown with it)")


class TriggerIn(_In):
    """``POST /v1/schedules/{id}/trigger``: one fire now (also when paused)."""

    overlap: Overlap | None = Field(
        default=None, description=f"{OVERLAP_DOC}. Absent: the schedule's own policy"
    )


class BackfillIn(_In):
    """``POST /v1/schedules/{id}/backfill``: every fire time of ``[start, end)``, each
    started once (asking again for the same range starts nothing new)."""

    start: datetime = Field(description="The range's start (included), ISO 8601, in the past")
    end: datetime = Field(
        description="The range's end (excluded), ISO 8601, after `start`, not in the future; "
        "the range holds at most 1,000 fire times"
    )
    overlap: Overlap | None = Field(
        default=None, description=f"{OVERLAP_DOC}. Absent: `buffer_all` (one after another)"
    )


class FireOut(BaseModel):
    """One fire time of a schedule and what became of it."""

    fire_at: datetime
    kind: str = Field(
        description="`cron` (its cron or `at`), `trigger` (trigger now) or `backfill`"
    )
    state: str = Field(
        description="`pending` (its run is being started), `started`, `buffered` (waits for "
        "the previous run), `skipped` (overlap policy), `missed` (older than the catch-up "
        "window), `failed` (its run could not be started: `error`)"
    )
    run_id: str | None = Field(default=None, description="The run it started")
    outcome: str = Field(description="The run's status now, once it has a run; else `state`")
    error: Any = None
    created_at: datetime


class ScheduleCounters(BaseModel):
    fired: int = Field(description="Fires that started a run")
    skipped: int = Field(description="Fires skipped (overlap policy) or missed (catch-up)")
    failed: int = Field(
        description="Fires whose run ended FAILED, CRASHED or INVALID, or could not start"
    )


class ScheduleOut(BaseModel):
    id: str
    workflow: str | None = None
    task_id: str | None = None
    input: Any = None
    cron: str | None = None
    timezone: str
    at: datetime | None = None
    description: str | None = Field(
        default=None, description='The cron in words ("At 09:00, Monday through Friday")'
    )
    options: dict[str, Any] = Field(
        description="Run options given (flow_control, retries, timeout, priority, sync_mode, "
        "max_results)"
    )
    overlap: str
    catchup_window: float
    pause_on_failure: bool
    remaining_actions: int | None = Field(default=None, description="Fires left (absent: no limit)")
    jitter: float
    callback: CallbackIn | None = None
    paused: bool
    note: str | None = None
    next_fire_at: datetime | None = Field(
        default=None, description="The next fire (absent: it fires no more)"
    )
    counters: ScheduleCounters
    created_at: datetime
    updated_at: datetime
    next_fires: list[datetime] | None = Field(
        default=None, description="The next 10 fire times (detail view only)"
    )
    recent_fires: list[FireOut] | None = Field(
        default=None, description="The last 10 fires, newest first (detail view only)"
    )


class SchedulePage(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None = None


class Backfilled(BaseModel):
    """What a backfill did: every fire time of the range with what became of it."""

    fires: list[FireOut]
    created: int = Field(description="Fires created now")
    existing: int = Field(description="Fires of the range that existed before (left as they are)")
