"""OpenTelemetry traces: one glue module for every layer, off unless configured.

Tracing is on in a process when the environment configures OpenTelemetry with the
standard ``OTEL_*`` variables (any of them set, and ``OTEL_SDK_DISABLED`` not ``true``)
and the ``otel`` extra is installed. Until then nothing here imports ``opentelemetry``:
every entry point answers None (or its input unchanged) after reading one module global,
so the hot paths pay nothing for tracing they do not do. What tracing does when on lives
in :mod:`runyard.telemetry.tracing`, imported the first time :func:`active` finds it on.

The trace of a run (see docs/operations.md, "Tracing"):

* the process that starts a run gives it a trace context (:func:`new_run_trace`): the
  caller's current span as parent (FastAPI's span of ``POST /v1/runs``, which took the
  request's ``traceparent``; the span around an in-process ``Runyard.start``), else a
  new trace. It is stored with the run (its options) and added to the run's callback
  headers, so every delivery carries it;
* the worker that executes an item reads it back (:func:`run_trace`) and traces each step
  attempt under the run's span; the process that ends the run records the run's span
  itself, from the run's start to its end, under the id its children already name: the
  worker whose outcome ends it, else the process that cancels it or whose recovery
  crashes it (:mod:`runyard.service.run_spans`), or that starts it with no valid input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .carrier import (
    OPTION,
    SPAN_FILE_ENV,
    otel_configured,
    with_current_trace,
    with_trace_headers,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from .tracing import RunTrace, Tracing

log = logging.getLogger("runyard.telemetry")

__all__ = [
    "OPTION",
    "SPAN_FILE_ENV",
    "active",
    "disable",
    "enable",
    "new_run_trace",
    "otel_configured",
    "run_trace",
    "with_current_trace",
    "with_trace_headers",
]

_UNDECIDED: Any = object()
_active: Tracing | None = _UNDECIDED


def active() -> Tracing | None:
    """This process's tracing, or None when it is off (decided once, on first use)."""
    current = _active
    if current is not _UNDECIDED:
        return current
    return _decide()


def _decide() -> Tracing | None:
    global _active
    tracing: Tracing | None = None
    if otel_configured():
        try:
            from .tracing import Tracing
        except ImportError as exc:
            log.warning(
                "OTEL_* variables are set but OpenTelemetry is not installed (%s): no "
                "traces. Install it with: pip install 'runyard[otel]'",
                exc,
            )
        else:
            tracing = Tracing.from_env()
    _active = tracing
    return tracing


def enable(processors: list[SpanProcessor]) -> Tracing:
    """Turn tracing on in this process with these span processors (an embedding
    application's, a test's in-memory exporter) instead of what ``OTEL_*`` says."""
    global _active
    from .tracing import Tracing

    _active = Tracing.with_processors(processors)
    return _active


def disable() -> None:
    """Turn tracing off in this process (:func:`active` decides again on next use)."""
    global _active
    current = _active
    _active = _UNDECIDED
    if current is not _UNDECIDED and current is not None:
        current.shutdown()


def new_run_trace() -> dict[str, Any] | None:
    """The trace context to store with a new run (a JSON object), or None when tracing
    is off. Parent: the current span (a request's, an in-process caller's), else none: a
    new trace."""
    tracing = active()
    if tracing is None:
        return None
    return tracing.new_run()


def run_trace(options: Mapping[str, Any], run_id: str, workflow: str) -> RunTrace | None:
    """What an execution traces its steps and its run under, from the run's stored
    ``options``; None when tracing is off here or the run was started without it."""
    tracing = active()
    if tracing is None:
        return None
    stored = options.get(OPTION)
    if not isinstance(stored, dict):
        return None
    return tracing.run(stored, run_id, workflow)
