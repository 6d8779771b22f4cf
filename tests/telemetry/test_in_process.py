"""Traces of runs started in process (both backends), read from the SDK's in-memory
exporter: the caller's span is the run's parent, each step attempt is a child of the
run's span, a failed attempt records its error; with tracing off nothing is traced."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from runyard import telemetry
from runyard.models import RunStatus
from tests.conftest import make_yard, raw_sql, running_worker
from tests.telemetry.app import define
from tests.waiting import NotYet, wait_until_async


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_the_callers_span_is_the_parent_of_the_run_and_its_step_attempts(
    db_url: str, exporter: InMemorySpanExporter
) -> None:
    tracing = telemetry.active()
    assert tracing is not None
    caller_tracer = tracing.provider.get_tracer("caller")

    async def main() -> str:
        yard = define(make_yard(db_url))
        try:
            with caller_tracer.start_as_current_span("caller", kind=SpanKind.CLIENT):
                handle = await yard.start("traced", {"tag": "t"})
            async with running_worker(yard):
                run = await handle.wait(timeout=60)
            assert run.status == RunStatus.SUCCEEDED, run.error
            return run.id
        finally:
            await yard.aclose()

    run_id = asyncio.run(main())
    spans = exporter.get_finished_spans()
    (caller,) = _named(spans, "caller")
    (run,) = _named(spans, "run traced")
    trace_id = caller.context.trace_id
    assert run.context.trace_id == trace_id
    assert run.parent is not None and run.parent.span_id == caller.context.span_id
    assert run.attributes == {
        "runyard.run_id": run_id,
        "runyard.workflow": "traced",
        "runyard.status": "SUCCEEDED",
    }
    assert run.start_time is not None and caller.start_time is not None
    assert run.end_time is not None and caller.end_time is not None
    # from the trigger (inside the caller's span) to the end (after it)
    assert caller.start_time <= run.start_time <= caller.end_time < run.end_time
    one = _named(spans, "step one")
    flaky = sorted(_named(spans, "step flaky"), key=lambda s: _attrs(s)["runyard.attempt"])
    assert len(one) == 1 and len(flaky) == 2
    for step in [*one, *flaky]:
        assert step.context.trace_id == trace_id
        assert step.parent is not None and step.parent.span_id == run.context.span_id
        assert _attrs(step)["runyard.run_id"] == run_id
        assert _attrs(step)["runyard.workflow"] == "traced"
    assert _attrs(one[0])["runyard.outcome"] == "completed"
    failed, passed = flaky
    assert (_attrs(failed)["runyard.attempt"], _attrs(passed)["runyard.attempt"]) == (1, 2)
    assert _attrs(failed)["runyard.outcome"] == "failed"
    assert failed.status.status_code == StatusCode.ERROR
    assert "first attempt fails" in str(failed.status.description)
    (event,) = failed.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"
    assert _attrs(passed)["runyard.outcome"] == "completed"
    assert passed.status.status_code == StatusCode.UNSET
    # The trace is stored with the run: its span's id is the one the steps name.
    stored = raw_sql(db_url, "SELECT options FROM runs WHERE id = %s", (run_id,))
    assert f"{run.context.span_id:016x}" in str(stored[0][0])


def test_a_run_without_a_caller_span_starts_its_own_trace_and_a_failed_run_is_an_error(
    db_url: str, exporter: InMemorySpanExporter
) -> None:
    async def main() -> None:
        yard = define(make_yard(db_url))
        try:
            handle = await yard.start("resumable", {})  # no marker: the step fails
            async with running_worker(yard):
                run = await handle.wait(timeout=60)
            assert run.status == RunStatus.FAILED
        finally:
            await yard.aclose()

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    (run,) = _named(spans, "run resumable")
    assert run.parent is None  # a trace of its own
    assert run.status.status_code == StatusCode.ERROR
    assert _attrs(run)["runyard.status"] == "FAILED"
    (before,) = _named(spans, "step before")
    assert before.context.trace_id == run.context.trace_id
    assert before.parent is not None and before.parent.span_id == run.context.span_id


def test_with_tracing_off_nothing_is_traced_or_stored(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    telemetry.disable()
    assert telemetry.active() is None

    async def main() -> str:
        yard = define(make_yard(db_url))
        try:
            handle = await yard.start("traced", {})
            async with running_worker(yard):
                run = await handle.wait(timeout=60)
            assert run.status == RunStatus.SUCCEEDED
            return run.id
        finally:
            await yard.aclose()

    run_id = asyncio.run(main())
    stored = raw_sql(db_url, "SELECT options FROM runs WHERE id = %s", (run_id,))
    assert "traceparent" not in str(stored[0][0])


def test_a_run_canceled_while_its_step_runs_ends_its_span_canceled(
    db_url: str, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    marker = tmp_path / "held"

    async def main() -> None:
        yard = define(make_yard(db_url))
        try:
            handle = await yard.start("resumable", {"marker": str(marker)})
            async with running_worker(yard):
                await wait_until_async(
                    lambda: asyncio.sleep(0, marker.exists()),
                    timeout=30,
                    what="the step holding",
                )
                await yard.cancel(handle.id)
                run = await handle.wait(timeout=30)
                assert run.status == RunStatus.CANCELED

                async def recorded() -> bool | NotYet:
                    names = [s.name for s in exporter.get_finished_spans()]
                    return "run resumable" in names or NotYet(names)

                await wait_until_async(recorded, timeout=30, what="the run's span")
        finally:
            await yard.aclose()

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    (run,) = _named(spans, "run resumable")
    assert _attrs(run)["runyard.status"] == "CANCELED"
    assert run.status.status_code == StatusCode.ERROR
    (hold,) = _named(spans, "step hold")
    assert _attrs(hold)["runyard.outcome"] == "interrupted"
    assert hold.parent is not None and hold.parent.span_id == run.context.span_id


def test_a_sampler_that_drops_a_new_trace_drops_its_steps_too(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's stored flags are the sampler's decision: no step is recorded under a
    run span that was not sampled."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    memory = InMemorySpanExporter()
    telemetry.enable([SimpleSpanProcessor(memory)])
    try:

        async def main() -> str:
            yard = define(make_yard(db_url))
            try:
                handle = await yard.start("traced", {})
                async with running_worker(yard):
                    run = await handle.wait(timeout=60)
                assert run.status == RunStatus.SUCCEEDED
                return run.id
            finally:
                await yard.aclose()

        run_id = asyncio.run(main())
    finally:
        telemetry.disable()
    assert memory.get_finished_spans() == ()
    stored = raw_sql(db_url, "SELECT options FROM runs WHERE id = %s", (run_id,))
    options = json.loads(stored[0][0]) if isinstance(stored[0][0], str) else stored[0][0]
    assert options["trace"]["traceparent"].endswith("-00")


def test_trace_headers_keep_a_traceparent_the_caller_gave() -> None:
    stored = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "tracestate": "a=1"}
    assert telemetry.with_trace_headers({"x-k": "v"}, stored) == {"x-k": "v", **stored}
    own = {"TraceParent": "00-" + "3" * 32 + "-" + "4" * 16 + "-01"}
    assert telemetry.with_trace_headers(own, stored) == {**own, "tracestate": "a=1"}
    assert telemetry.with_trace_headers(own, None) == own
