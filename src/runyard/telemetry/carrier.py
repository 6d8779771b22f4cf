"""What tracing's two halves share (no ``opentelemetry`` import here): whether the
environment turns tracing on, the test hook's variable, and the W3C headers of a run."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

#: Where a test (only) has a process write its finished spans, one JSON object a line
#: (the SDK's console exporter into that file), besides what ``OTEL_*`` configures.
SPAN_FILE_ENV = "RUNYARD_OTEL_SPAN_FILE"
#: The key of the run's trace context in its stored options.
OPTION = "trace"


def otel_configured() -> bool:
    """Whether the environment configures OpenTelemetry (the standard ``OTEL_*``
    variables), unless it disables the SDK."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(name.startswith("OTEL_") and value for name, value in os.environ.items())


def with_trace_headers(
    headers: Mapping[str, str], stored: Mapping[str, Any] | None
) -> dict[str, str]:
    """``headers`` with the W3C ``traceparent`` (and ``tracestate``) of ``stored`` (a
    run's stored trace context, or a carrier), unless they name their own (any
    spelling)."""
    out = dict(headers)
    if not stored:
        return out
    names = {k.lower() for k in out}
    for name in ("traceparent", "tracestate"):
        value = stored.get(name)
        if isinstance(value, str) and value and name not in names:
            out[name] = value
    return out


def with_current_trace(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the W3C trace context of the caller's current span (the SDK's
    requests), when the calling process uses OpenTelemetry: its tracing API is already
    loaded (a process that does not use it never imports it here). Otherwise ``headers``
    itself, untouched."""
    if "opentelemetry.trace" not in sys.modules:
        return headers
    from opentelemetry import propagate

    carrier = dict(headers)
    propagate.inject(carrier)  # (nothing without a current span)
    return carrier
