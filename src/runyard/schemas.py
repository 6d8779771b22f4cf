"""Wire models of the ``/v1`` HTTP API, shared by the server, the SDK, the CLI and (later)
the MCP server and dashboard: this module *is* the OpenAPI contract.

Times are ISO 8601 strings in UTC on the wire; durations are seconds (``timeout``,
``delay``). Unknown fields in request bodies are refused (422), so a typo never passes
silently.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidInput
from .http_target import HttpTarget, target_problems, target_url
from .models import (
    Attempt,
    Item,
    Lease,
    LogLine,
    Output,
    Run,
    RunStatus,
    StepRecord,
    Transition,
    Waiter,
)
from .rules import (
    ID_MAX,
    INT32_MAX,
    JSON_DEPTH_MAX,
    PRIORITY_MAX,
    RETRIES_MAX,
    RUN_ID_RE,
    input_choice_problems,
)

RUN_ID_PATTERN = RUN_ID_RE.pattern
Scope = Literal["read", "write", "admin"]


@overload
def ts(value: float) -> datetime: ...
@overload
def ts(value: float | None) -> datetime | None: ...
def ts(value: float | None) -> datetime | None:
    """Seconds since the epoch as an aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


#: The longest ``delay`` a run takes (a year and a day), and the latest ``not_before``
#: (the last second that a date can show, 9999-12-31T23:59:59Z).
MAX_DELAY_S = 366 * 86400
LATEST_S = 253_402_300_799.0


def finite(
    value: Any,
    field: str,
    *,
    minimum: float | None = 0.0,
    exclusive: bool = False,
    maximum: float | None = None,
) -> Any:
    """``value`` (None, or a number: seconds, or a time in seconds since the epoch) if
    it is a finite number not below ``minimum`` (above it, when ``exclusive``) nor above
    ``maximum``; else :class:`InvalidInput` naming ``field``. NaN and the infinities pass
    comparisons (``nan < 0`` is false), so every duration and time the API takes goes
    through here; on the wire, models say the same with ``allow_inf_nan=False``."""
    if value is None:
        return None
    try:
        ok = not isinstance(value, bool) and math.isfinite(value)
    except (TypeError, OverflowError):  # not a number; an int too large for a float
        ok = False
    if not ok:
        raise InvalidInput(
            f"{field} must be a finite number, not {value!r}",
            details=[{"field": field, "error": "not a finite number"}],
        )
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        op = ">" if exclusive else ">="
        raise InvalidInput(
            f"{field} must be a number {op} {minimum:g}",
            details=[{"field": field, "error": f"not {op} {minimum:g}"}],
        )
    if maximum is not None and value > maximum:
        raise InvalidInput(
            f"{field} must be at most {maximum:g}",
            details=[{"field": field, "error": f"not <= {maximum:g}"}],
        )
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors -------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_input"])
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint."""

    error: ErrorBody


# -- workflows ----------------------------------------------------------------------------


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    concurrency: int
    heartbeat_at: datetime


class WorkflowOut(BaseModel):
    name: str
    version: str
    description: str | None = None
    input_schema: dict[str, Any]
    options: dict[str, Any]
    updated_at: datetime
    workers: list[WorkerOut] | None = Field(
        default=None, description="Live workers serving this version (detail view only)"
    )


class WorkflowList(BaseModel):
    items: list[WorkflowOut]


# -- runs ---------------------------------------------------------------------------------


class FlowControlIn(_In):
    key: str = Field(min_length=1, max_length=ID_MAX)
    parallelism: int | None = Field(default=None, ge=1)
    rate: int | None = Field(default=None, ge=1)
    period: float = Field(default=1.0, gt=0, allow_inf_nan=False)


#: What the schema says of a JSON payload that is stored (422 past it).
PAYLOAD_DOC = (
    f"Any JSON value nested at most {JSON_DEPTH_MAX} levels (arrays or objects one inside "
    "the other); finite numbers; text without NUL characters"
)


def _payload(description: str = "") -> Any:
    return Field(default=None, description=f"{description}{PAYLOAD_DOC}")


class InputIn(_In):
    input: Any = _payload("One input. ")
    custom_data: Any = _payload("Data kept with this input (not given to the workflow). ")


class RunCallback(_In):
    """Where a run reports: its outputs as they are emitted and its end, signed per
    Standard Webhooks (docs/callbacks.md)."""

    url: str = Field(
        min_length=1, max_length=2048, description="http(s) URL, public unless allowed"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every message")


class RunOptions(_In):
    """Options of a run, given with a trigger or saved in a task."""

    flow_control: FlowControlIn | None = None
    retries: int | None = Field(default=None, ge=0, le=RETRIES_MAX)
    timeout: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Run timeout, seconds"
    )
    priority: int | None = Field(default=None, ge=-PRIORITY_MAX, le=PRIORITY_MAX)
    sync_mode: Literal["full", "incremental"] | None = None
    max_results: int | None = Field(default=None, ge=1, le=INT32_MAX)
    callback: RunCallback | None = Field(
        default=None, description="Where the run reports (signed callbacks; docs/callbacks.md)"
    )


class _InputChoice:
    """A trigger body: the rules between its input fields are checked with the other
    fields' (the HTTP API's body check calls :meth:`cross_field_problems` on the JSON
    sent), so that one 422 names every bad field."""

    @staticmethod
    def cross_field_problems(body: dict[str, Any]) -> list[tuple[str, str, str]]:
        return input_choice_problems(
            input_given=body.get("input") is not None,
            inputs_given=body.get("inputs") is not None,
            custom_data_given=body.get("custom_data") is not None,
        )


class RunCreate(RunOptions, _InputChoice):
    """``POST /v1/runs``. Give ``workflow`` with ``input`` (with optional ``custom_data``)
    or ``inputs``; or ``url`` (an HTTP target, with optional ``custom_data``)."""

    workflow: str | None = Field(
        default=None, min_length=1, max_length=128, description="Not with `url`"
    )
    url: HttpTarget | None = Field(
        default=None,
        description="Call this URL instead of a workflow (the built-in workflow `http`); "
        "not with `workflow`, `input` or `inputs`",
    )
    version: str | None = Field(default=None, max_length=64)
    input: Any = _payload(
        "The run's one input (not with `inputs`); it must match the workflow's input schema. "
    )
    custom_data: Any = _payload("Data kept with the input (not given to the workflow). ")
    inputs: list[InputIn] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Several inputs (not with `input`); one that does not match the "
        "workflow's input schema is discarded with its error, the others run",
    )
    mode: Literal["async", "live"] = "async"
    run_id: str | None = Field(
        default=None,
        pattern=RUN_ID_PATTERN,
        description="Your id for the run: a start with an existing id answers that run "
        "(200) instead of starting another",
    )
    delay: float | None = Field(default=None, ge=0, le=MAX_DELAY_S, allow_inf_nan=False)
    not_before: datetime | None = Field(
        default=None,
        description="ISO 8601; a time without a zone is UTC; within years 1-9999 once in UTC",
    )
    task_id: str | None = Field(
        default=None, max_length=ID_MAX, description="A saved task of the same workflow"
    )
    wait_timeout: float | None = Field(
        default=None,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="live mode: how long to wait for the result before answering 202 "
        "(default 30 s)",
    )

    @staticmethod
    def cross_field_problems(body: dict[str, Any]) -> list[tuple[str, str, str]]:
        return _InputChoice.cross_field_problems(body) + target_problems(body)


class LeaseOut(BaseModel):
    worker: str
    expires_at: datetime
    heartbeat_at: datetime | None = None

    @classmethod
    def of(cls, lease: Lease) -> LeaseOut:
        return cls(
            worker=lease.worker,
            expires_at=ts(lease.expires_at),
            heartbeat_at=ts(lease.heartbeat_at),
        )


class RunOut(BaseModel):
    id: str
    workflow: str
    workflow_version: str
    mode: str
    status: RunStatus
    priority: int
    input_count: int
    iteration: int
    result: Any = None
    error: Any = None
    progress: float | None = None
    progress_message: str | None = None
    credits: float
    target_url: str | None = Field(None, description="The URL an HTTP-target run calls")
    credits_by_action: dict[str, float] = Field(
        default_factory=dict, description="The credits by `ctx.charge` action (sum: `credits`)"
    )
    input: Any = Field(
        None,
        description="The run's input when it has exactly one (else null: each input's is "
        "in `/inputs`)",
    )
    waiting_for: str | None = None
    task_id: str | None = None
    schedule_id: str | None = None
    parent_id: str | None = None
    sync_mode: str | None = None
    max_results: int | None = None
    truncated: bool = Field(
        False,
        description="An emit was refused because the iteration reached `max_results`",
    )
    recovery_attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    not_before: datetime | None = None
    run_time: float | None = Field(
        None,
        description="Seconds from `started_at` to `finished_at` (to now while it runs; "
        "null before it starts)",
    )
    lease: LeaseOut | None = Field(
        None,
        description="Set when the run waits for a lease: an item's worker stopped "
        "heartbeating, and the item is free for another worker at `expires_at` (sooner "
        "once the worker's death is certain)",
    )

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            workflow=run.workflow,
            workflow_version=run.workflow_version,
            mode=run.mode,
            status=run.status,
            priority=run.priority,
            input_count=run.input_count,
            iteration=run.iteration,
            result=run.result,
            error=run.error,
            progress=run.progress,
            progress_message=run.progress_message,
            credits=run.credits,
            target_url=target_url(run.workflow, run.options),
            credits_by_action=run.credits_by_action,
            input=run.input,
            waiting_for=run.waiting_for,
            task_id=run.task_id,
            schedule_id=run.schedule_id,
            parent_id=run.parent_id,
            sync_mode=run.sync_mode,
            max_results=run.max_results,
            truncated=run.truncated,
            recovery_attempts=run.recovery_attempts,
            created_at=ts(run.created_at),
            started_at=ts(run.started_at),
            finished_at=ts(run.finished_at),
            updated_at=ts(run.updated_at),
            not_before=ts(run.not_before),
            run_time=run.run_time(),
            lease=LeaseOut.of(run.lease) if run.lease is not None else None,
        )


class RunStatusOut(BaseModel):
    """``GET /v1/runs/{id}/status``: the lightweight view for polling."""

    id: str
    status: RunStatus
    terminal: bool
    progress: float | None = None
    progress_message: str | None = None
    waiting_for: str | None = None
    updated_at: datetime

    @classmethod
    def of(cls, run: Run) -> RunStatusOut:
        return cls(
            id=run.id,
            status=run.status,
            terminal=run.terminal,
            progress=run.progress,
            progress_message=run.progress_message,
            waiting_for=run.waiting_for,
            updated_at=ts(run.updated_at),
        )


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None = None


class OutputOut(BaseModel):
    id: int
    item: int
    iteration: int
    key: str | None = None
    data: Any = None
    created_at: datetime

    @classmethod
    def of(cls, o: Output) -> OutputOut:
        return cls(
            id=o.id,
            item=o.item_idx,
            iteration=o.iteration,
            key=o.key,
            data=o.data,
            created_at=ts(o.created_at),
        )


class OutputPage(BaseModel):
    items: list[OutputOut]
    next_cursor: str | None = None


class LogOut(BaseModel):
    """A line the workflow logged (``ctx.logger``)."""

    id: int
    item: int
    iteration: int
    attempt: int = Field(description="The item's execution that wrote it (1 for the first)")
    level: str
    message: str
    created_at: datetime

    @classmethod
    def of(cls, line: LogLine) -> LogOut:
        return cls(
            id=line.id,
            item=line.item_idx,
            iteration=line.iteration,
            attempt=line.attempt,
            level=line.level,
            message=line.message,
            created_at=ts(line.created_at),
        )


class LogPage(BaseModel):
    items: list[LogOut]
    next_cursor: str | None = Field(
        None, description="Pass as `after` for the next page (also in `X-Pagination-Next`)"
    )


class LiveRunOut(BaseModel):
    """A live-mode answer: the run, and the first page of its outputs."""

    run: RunOut
    outputs: list[OutputOut]
    next_cursor: str | None = None


class InputOut(BaseModel):
    index: int
    state: str
    input: Any = None
    custom_data: Any = None
    result: Any = None
    error: Any = None

    @classmethod
    def of(cls, item: Item) -> InputOut:
        return cls(
            index=item.idx,
            state=item.state.value,
            input=item.input,
            custom_data=item.custom_data,
            result=item.result,
            error=item.error,
        )


class InputList(BaseModel):
    """``GET /v1/runs/{id}/inputs``: every input of the run, in order."""

    items: list[InputOut]


class QueueItemOut(BaseModel):
    index: int
    kind: str
    parent: int | None = None
    name: str | None = None
    state: str
    result: Any = None
    error: Any = None
    attempt: int
    waiting_for: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, item: Item) -> QueueItemOut:
        return cls(
            index=item.idx,
            kind=item.kind,
            parent=item.parent_idx,
            name=item.name,
            state=item.state.value,
            result=item.result,
            error=item.error,
            attempt=item.attempt,
            waiting_for=item.waiting_for,
            started_at=ts(item.started_at),
            finished_at=ts(item.finished_at),
        )


class QueuePage(BaseModel):
    items: list[QueueItemOut]
    offset: int
    limit: int


class AttemptOut(BaseModel):
    """A failed attempt: ``attempt`` counts within the workflow's attempt
    ``workflow_attempt`` (each attempt of the workflow's body gives each step its own
    retries, so a step may have ``workflow attempts x step attempts`` attempts in all)."""

    attempt: int = Field(description="The step's attempt within its workflow attempt, from 1")
    workflow_attempt: int = Field(
        default=1, description="The attempt of the workflow's body it belongs to, from 1"
    )
    started_at: datetime
    ended_at: datetime
    error: Any = None

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(
            attempt=a.attempt,
            workflow_attempt=a.workflow_attempt,
            started_at=ts(a.started_at),
            ended_at=ts(a.ended_at),
            error=a.error,
        )


class StepOut(BaseModel):
    item: int
    iteration: int
    position: int
    name: str
    kind: str
    status: str
    result: Any = None
    error: Any = None
    attempts: int
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_s: float | None = None
    failed_attempts: list[AttemptOut] = Field(default_factory=list)

    @classmethod
    def of(cls, s: StepRecord, failed: list[Attempt] | None = None) -> StepOut:
        duration = s.completed_at - s.started_at if s.completed_at and s.started_at else None
        return cls(
            item=s.item_idx,
            iteration=s.iteration,
            position=s.position,
            name=s.name,
            kind=s.kind,
            status=s.status,
            result=s.result,
            error=s.error,
            attempts=s.attempts,
            started_at=ts(s.started_at),
            completed_at=ts(s.completed_at),
            duration_s=duration,
            failed_attempts=[AttemptOut.of(a) for a in failed or []],
        )


class StepList(BaseModel):
    items: list[StepOut]


class TransitionOut(BaseModel):
    from_status: str | None = None
    to_status: str
    at: datetime

    @classmethod
    def of(cls, t: Transition) -> TransitionOut:
        return cls(from_status=t.from_status, to_status=t.to_status, at=ts(t.at))


class TransitionList(BaseModel):
    """``GET /v1/runs/{id}/transitions``: every status change, oldest first (the first
    has no ``from_status``: the run's creation)."""

    items: list[TransitionOut]


class BulkCancel(_In):
    """``POST /v1/runs/cancel``: which runs to cancel (at least one selector)."""

    ids: list[str] | None = Field(default=None, max_length=10_000)
    workflow: str | None = None
    prefix: str | None = Field(default=None, min_length=1)
    url_prefix: str | None = Field(
        default=None, min_length=1, description="HTTP-target runs whose URL starts with this"
    )
    all: bool = Field(default=False, description="Every run not ended; needs the admin scope")


class Canceled(BaseModel):
    canceled: list[str]


class ForkIn(_In):
    from_step: int | str = Field(description="A step position (as in /steps) or a step name")
    run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    input: Any = _payload("A new input from the step on. ")
    version: str | None = None


# -- tasks --------------------------------------------------------------------------------


class TaskIn(_In):
    id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    name: str | None = Field(default=None, max_length=200)
    workflow: str = Field(min_length=1, max_length=128)
    input: Any = _payload("The default input of the runs started from the task. ")
    options: RunOptions = Field(default_factory=RunOptions)


class TaskPatch(_In):
    name: str | None = Field(default=None, max_length=200)
    workflow: str | None = Field(default=None, min_length=1, max_length=128)
    input: Any = _payload("The new default input. ")
    options: RunOptions | None = None


class TaskOut(BaseModel):
    id: str
    name: str | None = None
    workflow: str
    input: Any = None
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = None


class TaskExecute(RunOptions, _InputChoice):
    """``POST /v1/tasks/{id}/execute``: overrides of the task's defaults."""

    input: Any = _payload("Instead of the task's input (not with `inputs`). ")
    inputs: list[InputIn] | None = Field(default=None, min_length=1)
    mode: Literal["async", "live"] = "async"
    run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    wait_timeout: float | None = Field(default=None, gt=0, le=300, allow_inf_nan=False)


# -- events, usage, health ------------------------------------------------------------------


class NotifyIn(_In):
    data: Any = _payload("Given to the runs woken. ")


class Notified(BaseModel):
    event_id: str
    woken: list[str]


class WaiterOut(BaseModel):
    """A run waiting for the event (``ctx.wait_for_event``)."""

    run_id: str = Field(description="The run that waits")
    item: int = Field(description="The item of the run that waits (its index in /queue)")
    since: datetime = Field(description="When the wait began")
    deadline: datetime | None = Field(
        default=None, description="When the wait times out (absent: it has no timeout)"
    )

    @classmethod
    def of(cls, w: Waiter) -> WaiterOut:
        return cls(
            run_id=w.run_id,
            item=w.item_idx,
            since=ts(w.since),
            deadline=ts(w.deadline),
        )


class WaiterList(BaseModel):
    items: list[WaiterOut]


class UsageRow(BaseModel):
    day: str
    workflow: str
    action: str
    credits: float
    charges: int


class UsageOut(BaseModel):
    since: datetime
    until: datetime
    total: float
    by_action: dict[str, float]
    by_workflow: dict[str, float]
    by_day: dict[str, float]
    rows: list[UsageRow]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    version: str


# -- callbacks (docs/callbacks.md) --


class DeliveryAttemptOut(BaseModel):
    """One attempt to deliver a callback message."""

    attempt: int
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    next_attempt_at: float | None = None
    at: float


class DeliveryOut(BaseModel):
    """One message (``message_id`` is its ``webhook-id``). ``state``: pending, delivered,
    failed (every retry spent), stopped (the receiver answered 410)."""

    id: int
    message_id: str
    run_id: str
    input_index: int
    url: str
    kind: str
    state: str
    attempts: list[DeliveryAttemptOut]
    next_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    created_at: float
    delivered_at: float | None = None


class DeliveryList(BaseModel):
    """``GET /v1/runs/{id}/deliveries``."""

    data: list[DeliveryOut]
