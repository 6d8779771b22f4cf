"""The service layer: the one place where runs are started, read and controlled, under
every front door (the in-process :class:`~runyard.Runyard`, the HTTP API, the CLI, and
the scheduler, MCP server and dashboard to come). Requests come in typed
(:class:`StartRequest`), records go out as the dataclasses of :mod:`runyard.models`;
no database row leaves it."""

from __future__ import annotations

from ..config import Settings
from ..store.dbexec import retry_window
from ..store.hub import wait_event
from .bulk import BULK_MAX, BulkMixin
from .callbacks import CallbacksMixin, Delivery
from .catalog import USAGE_PERIOD_S, TaskChange, UsageReport
from .core import Core
from .handles import RunHandle
from .overview import OVERVIEW_COUNT_CAP, Activity, Overview, OverviewMixin, UsageSeries, WorkerLoad
from .schedules import Backfill, Schedule, ScheduleFire, SchedulesMixin, ScheduleSpec
from .sessions import SessionsMixin
from .starting import (
    Published,
    StartRequest,
    check_options,
    request_from_options,
    validate_against_schema,
)
from .steplog import StepLogMixin, shape_step_log
from .watching import RunsChanged, WatchMixin

__all__ = [
    "BULK_MAX",
    "OVERVIEW_COUNT_CAP",
    "USAGE_PERIOD_S",
    "Activity",
    "Backfill",
    "Core",
    "Delivery",
    "Overview",
    "RunHandle",
    "RunsChanged",
    "Schedule",
    "ScheduleFire",
    "ScheduleSpec",
    "Service",
    "StartRequest",
    "TaskChange",
    "UsageReport",
    "UsageSeries",
    "WorkerLoad",
    "check_options",
    "request_from_options",
    "retry_window",
    "shape_step_log",
    "validate_against_schema",
    "wait_event",
]


class Service(
    SchedulesMixin,
    CallbacksMixin,
    OverviewMixin,
    BulkMixin,
    StepLogMixin,
    WatchMixin,
    SessionsMixin,
):
    """Runs (start, read, wait, control), workflows, tasks, schedules, usage and keys, over one
    :class:`Core`."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._records: dict[tuple[str, str | None], tuple[float, Published | None]] = {}

    @property
    def settings(self) -> Settings:
        return self.core.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self.core.settings = settings

    def close(self) -> None:
        self.core.close()
