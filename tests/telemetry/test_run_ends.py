"""Every run that ends gets one run span, from the process that ended it (both
backends): a cancel records the spans of the runs it canceled (queued ones, several at
once, one that a worker is running), a worker's recovery those of the runs it marks
CRASHED, the worker whose outcome ends a run that one; a run with no valid input ends,
and is traced, as it starts. In process the spans are read from the SDK's in-memory
exporter; worker processes write theirs to a file (the test hook
``RUNYARD_OTEL_SPAN_FILE``)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from runyard import Runyard, telemetry
from runyard.errors import IllegalTransition
from runyard.models import RunStatus
from runyard.service import run_spans
from runyard.telemetry import SPAN_FILE_ENV
from tests.conftest import WorkerProcess, make_yard, raw_sql
from tests.telemetry.app import define
from tests.waiting import NotYet, wait_until, wait_until_async

APP = "tests.telemetry.app:yard"


@pytest.fixture(autouse=True)
def _no_otel_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes get only the OTEL_* variables a test gives them."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)


def run_spans_of(spans: Sequence[ReadableSpan], workflow: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == f"run {workflow}"]


def stored_trace(db_url: str, run_id: str) -> dict[str, Any]:
    """The trace context stored with the run at its start."""
    ((options,),) = raw_sql(db_url, "SELECT options FROM runs WHERE id = %s", (run_id,))
    parsed = json.loads(options) if isinstance(options, str) else options
    trace: dict[str, Any] = parsed["trace"]
    return trace


def assert_is_the_stored_span(db_url: str, span: ReadableSpan, run_id: str) -> None:
    """``span`` has the ids and start time stored with run ``run_id`` when it started."""
    stored = stored_trace(db_url, run_id)
    _, trace_id, span_id, _ = stored["traceparent"].split("-")
    assert (span.context.trace_id, span.context.span_id) == (int(trace_id, 16), int(span_id, 16))
    assert span.start_time is not None and span.start_time == stored["start_ns"]
    assert span.end_time is not None and span.end_time >= span.start_time


class CountingReads:
    """Counts the reads of stored trace contexts (each still done by the real store)."""

    def __init__(self, yard: Runyard) -> None:
        self.batches: list[list[str]] = []
        store = yard.core.store
        real: Callable[..., Any] = store.run_traces

        def counted(tx: Any, ids: Sequence[str]) -> Any:
            self.batches.append(list(ids))
            return real(tx, ids)

        store.run_traces = counted  # type: ignore[method-assign]


def test_a_run_canceled_while_queued_has_its_run_span(
    db_url: str, exporter: InMemorySpanExporter
) -> None:
    async def main() -> str:
        yard = define(make_yard(db_url))
        try:
            handle = await yard.start("traced", {"tag": "q"})
            assert await yard.cancel(handle.id) == [handle.id]
            assert (await yard.get_run(handle.id)).status == RunStatus.CANCELED
            return handle.id
        finally:
            await yard.aclose()

    run_id = asyncio.run(main())
    spans = exporter.get_finished_spans()
    (run,) = run_spans_of(spans, "traced")
    assert run.attributes == {
        "runyard.run_id": run_id,
        "runyard.workflow": "traced",
        "runyard.status": "CANCELED",
    }
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description == "the run was canceled"
    assert run.parent is None  # started outside any span: a trace of its own
    assert_is_the_stored_span(db_url, run, run_id)
    assert [s.name for s in spans] == ["run traced"]  # no step ran


def test_a_bulk_cancel_records_one_span_per_run_reading_in_batches(
    db_url: str, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_spans, "TRACE_BATCH", 2)

    async def main() -> tuple[list[str], list[str], list[list[str]]]:
        yard = define(make_yard(db_url))
        reads = CountingReads(yard)
        try:
            ids = [(await yard.start("traced", {"tag": str(i)})).id for i in range(5)]
            other = (await yard.start("resumable", {})).id  # not selected: not canceled
            canceled = await yard.cancel(workflow="traced")
            assert sorted(canceled) == sorted(ids)
            assert (await yard.get_run(other)).status == RunStatus.QUEUED
            return ids, canceled, reads.batches
        finally:
            await yard.aclose()

    ids, canceled, batches = asyncio.run(main())
    runs = run_spans_of(exporter.get_finished_spans(), "traced")
    assert sorted(str((s.attributes or {})["runyard.run_id"]) for s in runs) == sorted(ids)
    for span in runs:
        run_id = str((span.attributes or {})["runyard.run_id"])
        assert (span.attributes or {})["runyard.status"] == "CANCELED"
        assert span.status.status_code == StatusCode.ERROR
        assert_is_the_stored_span(db_url, span, run_id)
    assert run_spans_of(exporter.get_finished_spans(), "resumable") == []
    # The canceled runs' trace contexts were read two runs at a time.
    assert batches == [canceled[0:2], canceled[2:4], canceled[4:5]]


def test_with_tracing_off_a_cancel_reads_no_trace_context(
    db_url: str, exporter: InMemorySpanExporter
) -> None:
    async def main() -> list[list[str]]:
        yard = define(make_yard(db_url))
        reads = CountingReads(yard)
        try:
            traced = [(await yard.start("traced", {})).id for _ in range(3)]
            telemetry.disable()
            assert telemetry.active() is None  # (no OTEL_* variable here)
            assert sorted(await yard.cancel(ids=traced)) == sorted(traced)
            return reads.batches
        finally:
            await yard.aclose()

    assert asyncio.run(main()) == []
    assert exporter.get_finished_spans() == ()


def test_a_run_with_no_valid_input_is_traced_as_it_starts(
    db_url: str, exporter: InMemorySpanExporter
) -> None:
    async def main() -> str:
        yard = define(make_yard(db_url))
        try:
            handle = await yard.start("traced", inputs=[1, "two"], run_id="bad-inputs")
            assert (await yard.get_run(handle.id)).status == RunStatus.INVALID
            again = await yard.start("traced", inputs=[1, "two"], run_id="bad-inputs")
            assert again.id == handle.id  # the same run: no second span
            return handle.id
        finally:
            await yard.aclose()

    run_id = asyncio.run(main())
    (run,) = run_spans_of(exporter.get_finished_spans(), "traced")
    assert (run.attributes or {})["runyard.run_id"] == run_id
    assert (run.attributes or {})["runyard.status"] == "INVALID"
    assert run.status.status_code == StatusCode.ERROR
    assert_is_the_stored_span(db_url, run, run_id)


# -- across processes: worker processes write their spans to files ----------------------


def file_spans(path: Path) -> list[dict[str, Any]]:
    """The spans a process wrote to its file."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def named(found: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in found if s["name"] == name]


def traced_worker(
    db_url: str, tmp_path: Path, procs: list[WorkerProcess], name: str
) -> tuple[WorkerProcess, Path]:
    """A worker process tracing (OTEL_* set, no exporter but its span file)."""
    path = tmp_path / f"{name}.spans"
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_SERVICE_NAME": f"worker-{name}",
        SPAN_FILE_ENV: str(path),
    }
    w = WorkerProcess(APP, db_url, env=env, log=tmp_path / f"worker-{name}.log")
    procs.append(w)
    return w.start(), path


def test_a_run_crashed_by_recovery_has_its_span_from_the_recovering_worker(
    db_url: str,
    tmp_path: Path,
    worker_procs: list[WorkerProcess],
    exporter: InMemorySpanExporter,
) -> None:
    marker = tmp_path / "held"
    first, on_a = traced_worker(db_url, tmp_path, worker_procs, "a")

    async def main() -> tuple[str, Path]:
        yard = define(make_yard(db_url))
        try:
            # max_recovery_attempts=0: the first recovery gives the run up
            handle = await yard.start("fragile", {"marker": str(marker)})
            await wait_until_async(
                lambda: asyncio.sleep(0, marker.exists()), timeout=30, what="the step holding"
            )
            first.kill()
            _, on_b = traced_worker(db_url, tmp_path, worker_procs, "b")
            run = await handle.wait(timeout=60)
            assert run.status == RunStatus.CRASHED, run.error
            return handle.id, on_b
        finally:
            await yard.aclose()

    run_id, on_b = asyncio.run(main())

    def recorded() -> list[dict[str, Any]] | NotYet:
        found = named(file_spans(on_b), "run fragile")
        return found or NotYet(file_spans(on_b))

    (run,) = wait_until(recorded, timeout=30, what="the crashed run's span")
    assert run["attributes"] == {
        "runyard.run_id": run_id,
        "runyard.workflow": "fragile",
        "runyard.status": "CRASHED",
    }
    assert run["status"]["status_code"] == "ERROR"
    assert "died" in run["status"]["description"]
    assert run["resource"]["attributes"]["service.name"] == "worker-b"
    stored = stored_trace(db_url, run_id)
    _, trace_id, span_id, _ = stored["traceparent"].split("-")
    assert run["context"]["trace_id"] == f"0x{trace_id}"
    assert run["context"]["span_id"] == f"0x{span_id}"
    # Worker a ran "before" (under the run's span) and died in "hold": no run span there,
    # nor in this process, which only started the run.
    (before,) = named(file_spans(on_a), "step before")
    assert before["parent_id"] == f"0x{span_id}"
    assert named(file_spans(on_a), "run fragile") == []
    assert named(file_spans(on_b), "step hold") == []
    assert exporter.get_finished_spans() == ()


def test_one_run_span_per_run_whoever_ends_it(
    db_url: str,
    tmp_path: Path,
    worker_procs: list[WorkerProcess],
    exporter: InMemorySpanExporter,
) -> None:
    """A run canceled while its worker runs it: the canceling process records its span,
    the worker none. A run its worker ends: the worker records it, and a cancel coming
    after that changes nothing and records nothing."""
    marker = tmp_path / "held"
    _, on_worker = traced_worker(db_url, tmp_path, worker_procs, "w")

    async def main() -> tuple[str, str]:
        yard = define(make_yard(db_url))
        try:
            held = await yard.start("resumable", {"marker": str(marker)})
            await wait_until_async(
                lambda: asyncio.sleep(0, marker.exists()), timeout=30, what="the step holding"
            )
            assert await yard.cancel(held.id) == [held.id]
            done = await yard.start("traced", {})
            assert (await done.wait(timeout=60)).status == RunStatus.SUCCEEDED
            with pytest.raises(IllegalTransition):
                await yard.cancel(done.id)
            assert await yard.cancel(ids=[done.id]) == []
            return held.id, done.id
        finally:
            await yard.aclose()

    held_id, done_id = asyncio.run(main())

    def recorded() -> list[dict[str, Any]] | NotYet:
        found = file_spans(on_worker)
        names = [s["name"] for s in found]
        return found if {"run traced", "step hold"} <= set(names) else NotYet(names)

    found = wait_until(recorded, timeout=30, what="the worker's spans")
    # The canceled run: its span from this process, the canceling one; none from the worker
    # (whose interrupted attempt is a child of that span).
    (canceled,) = run_spans_of(exporter.get_finished_spans(), "resumable")
    assert (canceled.attributes or {})["runyard.run_id"] == held_id
    assert (canceled.attributes or {})["runyard.status"] == "CANCELED"
    assert_is_the_stored_span(db_url, canceled, held_id)
    assert named(found, "run resumable") == []
    (hold,) = named(found, "step hold")
    assert hold["attributes"]["runyard.outcome"] == "interrupted"
    assert int(hold["parent_id"], 16) == canceled.context.span_id
    # The run its worker ended: one span, the worker's; the refused cancels added none.
    (ended,) = named(found, "run traced")
    assert ended["attributes"]["runyard.run_id"] == done_id
    assert ended["attributes"]["runyard.status"] == "SUCCEEDED"
    assert run_spans_of(exporter.get_finished_spans(), "traced") == []
