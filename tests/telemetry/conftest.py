"""What the tracing tests share: tracing on in the test's process, its spans in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runyard import telemetry


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, its spans kept in memory; off again afterwards."""
    memory = InMemorySpanExporter()
    telemetry.enable([SimpleSpanProcessor(memory)])
    try:
        yield memory
    finally:
        telemetry.disable()
