"""Records shared by the store, the engine and every client surface.

One status vocabulary everywhere: the strings below are what the database holds, what
the API returns and what the CLI prints.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class RunStatus(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL_SUCCEEDED = "PARTIAL_SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    CRASHED = "CRASHED"
    INVALID = "INVALID"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.PARTIAL_SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELED,
        RunStatus.CRASHED,
        RunStatus.INVALID,
    }
)

#: The statuses in which a run's items execute (any other stops its executions).
EXECUTING = frozenset({RunStatus.RUNNING, RunStatus.QUEUED})


class ItemState(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    DISCARDED = "discarded"


#: What a client may ask for, and from which statuses (SPEC §2). The engine's own
#: transitions (QUEUED→RUNNING, RUNNING→terminal) are guarded in SQL.
CLIENT_TRANSITIONS: dict[str, frozenset[RunStatus]] = {
    "cancel": frozenset(
        {RunStatus.SCHEDULED, RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED}
    ),
    "pause": frozenset({RunStatus.QUEUED, RunStatus.RUNNING}),
    "resume": frozenset(
        {RunStatus.PAUSED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.CRASHED}
    ),
    "continue": frozenset(
        {
            RunStatus.SUCCEEDED,
            RunStatus.PARTIAL_SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELED,
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease a run's item waits on when its worker missed its heartbeats: the item
    is free for another worker at ``expires_at`` (sooner if the worker's death becomes
    certain)."""

    worker: str
    expires_at: float
    heartbeat_at: float | None


@dataclass(frozen=True, slots=True)
class Run:
    """A run as stored."""

    id: str
    workflow: str
    workflow_version: str
    mode: str
    status: RunStatus
    priority: int
    input_count: int
    iteration: int
    result: Any
    error: Any
    progress: float | None
    progress_message: str | None
    credits: float
    waiting_for: str | None
    task_id: str | None
    schedule_id: str | None
    parent_id: str | None
    sync_mode: str | None
    max_results: int | None
    options: dict[str, Any]
    recovery_attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    not_before: float | None
    #: The credits by action (``ctx.charge``'s action: amount), beside their total.
    credits_by_action: dict[str, float] = field(default_factory=dict)
    #: The run's input when it has exactly one (else None: each is in its items).
    input: Any = None
    #: Outputs the current iteration stored, and whether an emit was refused because
    #: ``max_results`` was reached (both reset by a continue).
    output_count: int = 0
    truncated: bool = False
    #: Set by a read of one run: the lease it waits on (its worker stopped heartbeating).
    lease: Lease | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def run_time(self, now: float | None = None) -> float | None:
        """Seconds from its start to its end, or to ``now`` (default: this moment) while
        it has not ended; None before it started."""
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            end = time.time() if now is None else now
        return max(0.0, end - self.started_at)


@dataclass(frozen=True, slots=True)
class Item:
    """One unit of work of a run: an input, a fanned-out element or a failure hook."""

    run_id: str
    idx: int
    kind: str
    parent_idx: int | None
    name: str | None
    input: Any
    custom_data: Any
    state: ItemState
    result: Any
    error: Any
    attempt: int
    waiting_for: str | None
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A checkpoint: what one durable operation of a workflow recorded."""

    run_id: str
    item_idx: int
    iteration: int
    position: int
    name: str
    kind: str
    status: str
    result: Any
    error: Any
    attempts: int
    started_at: float | None
    completed_at: float | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt of a step (successful ones are the checkpoint itself), or of
    the workflow's body (position 0). ``attempt`` counts within the body's attempt
    ``workflow_attempt`` (each attempt of the body gives each step its own retries)."""

    run_id: str
    item_idx: int
    position: int
    name: str
    attempt: int
    started_at: float
    ended_at: float
    error: Any
    workflow_attempt: int = 1


@dataclass(frozen=True, slots=True)
class Output:
    """A record a workflow emitted."""

    id: int
    run_id: str
    item_idx: int
    iteration: int
    key: str | None
    data: Any
    created_at: float


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line a workflow logged through ``ctx.logger``: which item, iteration and attempt
    (the item's execution count) wrote it."""

    id: int
    run_id: str
    item_idx: int
    iteration: int
    attempt: int
    level: str
    message: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Transition:
    run_id: str
    from_status: str | None
    to_status: str
    at: float


@dataclass(frozen=True, slots=True)
class Waiter:
    event_id: str
    run_id: str
    item_idx: int
    since: float
    deadline: float | None


@dataclass(frozen=True, slots=True)
class Page:
    """A page of a list, with the cursor of the next page (``None`` at the end)."""

    items: list[Any]
    next_cursor: str | None = None


@dataclass(slots=True)
class NewInput:
    """One input of a run being created."""

    input: Any
    custom_data: Any = None
    error: Any = None  # set when the input failed validation: the item is discarded


@dataclass(slots=True)
class NewRun:
    """Everything needed to create a run."""

    id: str
    workflow: str
    workflow_version: str
    inputs: list[NewInput]
    mode: str = "async"
    priority: int = 0
    not_before: float | None = None
    delay_s: float | None = None
    flow_key: str | None = None
    #: Limits given with the trigger for ``flow_key`` (key, parallelism, rate, period_s);
    #: stored with the run, in the same transaction.
    flow_limits: dict[str, Any] | None = None
    timeout_s: float | None = None
    max_recovery_attempts: int = 5
    has_on_failure: bool = False
    task_id: str | None = None
    schedule_id: str | None = None
    parent_id: str | None = None
    sync_mode: str | None = None
    max_results: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: The canonical request that asked for the run (JSON text, see
    #: ``runyard.service.starting.canonical_request``), stored with it: a trigger that
    #: reuses the run's id with another request is refused. None: not compared.
    request: str | None = None
    #: Where the run reports (``{"url": ..., "headers": {...}}``), stored with it.
    callback: dict[str, Any] | None = None

    def due_at(self) -> float | None:
        """When a delayed run becomes due (epoch seconds, this machine's clock); None:
        at once."""
        if self.not_before is not None:
            return self.not_before
        return time.time() + self.delay_s if self.delay_s else None


@dataclass(frozen=True)
class RunCounts:
    """What a metrics scrape reads: runs not ended by status, runs ended since a
    transition by status, and the last transition read (where the next scrape starts)."""

    open: dict[str, int]
    ended: dict[str, int]
    last_transition: int


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """What workers published for one version of a workflow (the server never imports
    user code: it knows workflows from these)."""

    name: str
    version: str
    description: str | None
    #: The input's JSON schema as published (JSON text: compiled once per text).
    input_schema_json: str
    options: dict[str, Any]
    updated_at: float

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def input_schema(self) -> dict[str, Any]:
        import json

        schema = json.loads(self.input_schema_json) if self.input_schema_json else None
        return schema if isinstance(schema, dict) else {}


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker process that heartbeats, and the workflow references it serves."""

    id: str
    host: str
    pid: int
    concurrency: int
    heartbeat_at: float
    workflows: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Task:
    """A saved run template: a workflow, a default input and run options."""

    id: str
    name: str | None
    workflow: str
    input: Any
    options: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Credits charged with one action by one workflow's runs on one day (UTC)."""

    day: str
    workflow: str
    action: str
    credits: float
    charges: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An issued API key as stored (its digest only: the key is shown once)."""

    id: str
    name: str | None
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


# -- the dashboard's overview (issue 22) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenCount:
    """Runs of one workflow (None: every workflow) in one status not ended, counted up
    to a cap: ``n`` above the cap reads "more than the cap"."""

    workflow: str | None
    status: str
    n: int


@dataclass(frozen=True, slots=True)
class EndedCount:
    """Runs that ended in one status within one time bucket (``bucket`` is the bucket's
    start divided by its width)."""

    bucket: int
    status: str
    n: int


@dataclass(frozen=True, slots=True)
class HeldItem:
    """An item a worker holds now: its run, workflow and lease expiry."""

    owner: str
    run_id: str
    item_idx: int
    workflow: str
    name: str | None
    started_at: float | None
    lease_expires_at: float | None
