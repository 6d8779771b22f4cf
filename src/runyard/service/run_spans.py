"""The run spans of runs that end without an outcome of one of their items: canceled
(:meth:`Service.cancel <runyard.service.control.ControlMixin.cancel>`, whichever door
called it) or marked CRASHED by a worker's recovery. The process that ended them records
them, under the span id stored at each run's start (see :mod:`runyard.telemetry`).

Only where tracing is on: callers ask :func:`runyard.telemetry.active` first (one global
read), so a process that does not trace reads nothing more than the ending did. A run
that an item's outcome ends is its worker's to record; the endings here fence that
outcome out (the items' owner and epoch change), so each run gets one span.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .. import telemetry
from ..models import RunStatus
from .core import Core

log = logging.getLogger("runyard.telemetry")

#: The most runs whose stored trace contexts one read takes.
TRACE_BATCH = 500


async def record_run_ends(core: Core, run_ids: Sequence[str], status: RunStatus) -> None:
    """Record the run span of each of ``run_ids``, which this process has just ended with
    ``status``, where it traces (nothing otherwise). Their stored trace contexts are read
    :data:`TRACE_BATCH` runs at a time; a run started without tracing has none. The runs
    have ended whatever happens here: a failed read is logged, not raised."""
    if not run_ids or telemetry.active() is None:
        return
    for start in range(0, len(run_ids), TRACE_BATCH):
        batch = list(run_ids[start : start + TRACE_BATCH])
        try:
            rows = await core.read(core.store.run_traces, batch)
        except Exception as exc:
            log.warning("the spans of %d ended run(s) are not recorded: %s", len(batch), exc)
            continue
        for run_id, workflow, options, error in rows:
            if not isinstance(options, dict):
                continue
            trace = telemetry.run_trace(options, run_id, workflow)
            if trace is not None:
                trace.end_run(status.value, error)
