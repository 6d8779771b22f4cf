"""Keyword options of the clients' methods, typed (``**options: Unpack[...]``)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict

from ..http_target import HttpTarget
from ..schemas import FlowControlIn, RunOptions


class _Unset(enum.Enum):
    UNSET = 0


#: "Not given" for fields where ``None`` is a value (e.g. clearing a task's input).
UNSET: Any = _Unset.UNSET


class ExecuteOptions(TypedDict, total=False):
    """Options of a run started from a task (each overrides the task's default)."""

    inputs: Iterable[Any]
    """Several inputs: each a value, or ``{"input": ..., "custom_data": ...}``."""
    run_id: str
    """A unique id chosen by the caller: starting again with it returns the same run."""
    wait_timeout: float
    """Live mode: how long the server waits for the result before answering 202."""
    flow_control: FlowControlIn | Mapping[str, Any]
    retries: int
    timeout: float
    """The run's timeout, seconds."""
    priority: int
    sync_mode: Literal["full", "incremental"]
    max_results: int


class StartOptions(ExecuteOptions, total=False):
    """Options of ``POST /v1/runs`` besides the workflow, the input and the mode."""

    custom_data: Any
    url: HttpTarget | Mapping[str, Any]
    """An HTTP target instead of a workflow (give ``workflow=None``)."""
    version: str
    delay: float
    not_before: datetime | str
    task_id: str
    callback: Mapping[str, Any]
    """``{"url": ..., "headers": {...}}``: where the run reports (signed callbacks)."""


class RunFilters(TypedDict, total=False):
    """Filters and order of ``GET /v1/runs``."""

    workflow: str
    task_id: str
    status: str | Sequence[str]
    """One status or several (any of them)."""
    mode: str
    schedule_id: str
    created_after: datetime | str
    created_before: datetime | str
    limit: int
    """Page size (at most 100)."""
    sort: str
    order: Literal["asc", "desc"]


Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]


class ScheduleSettings(TypedDict, total=False):
    """A schedule's settings besides its workflow, input, cron and ``at``."""

    task_id: str
    """A saved task each fire executes (instead of a workflow)."""
    timezone: str
    """An IANA name (``Europe/Paris``): the cron is read in it."""
    options: RunOptions | Mapping[str, Any]
    """Options of each fire's run (flow control, retries, timeout, priority, ...)."""
    overlap: Overlap
    """When the previous run is still going (default ``skip``)."""
    catchup_window: float
    """Seconds (at least 10): missed fires younger than this still run after downtime."""
    pause_on_failure: bool
    remaining_actions: int | None
    """Stop after this many fires."""
    jitter: float
    callback: Mapping[str, Any] | None
    """``{"url": ..., "headers": {...}}``."""


class ScheduleOptions(ScheduleSettings, total=False):
    """What ``create_schedule`` takes besides the workflow, input, cron and ``at``."""

    schedule_id: str
    """Your id for the schedule (creating it again answers the one stored)."""
    paused: bool
    note: str


class ScheduleChanges(ScheduleSettings, total=False):
    """What ``update_schedule`` changes (the fields given, from the next fire on)."""

    workflow: str
    input: Any
    cron: str
    at: datetime | str
