"""Every run has a trace context of its own, also when it is made from another: a fork
does not inherit its source's (its span would have the source's id), and each fire of a
schedule (copies of one prepared run) gets its own, with its callback's trace headers
following it. Both backends, tracing on in process (the in-memory exporter)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runyard import Context, telemetry
from runyard.models import NewInput, NewRun, RunStatus
from runyard.service import ScheduleSpec
from runyard.service.starting import retraced
from tests.conftest import make_yard, raw_sql, running_worker
from tests.telemetry.app import define
from tests.waiting import NotYet, wait_until_async


def _traces(db_url: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    marks = ", ".join(["%s"] * len(run_ids))
    rows = raw_sql(db_url, f"SELECT id, options FROM runs WHERE id IN ({marks})", tuple(run_ids))
    return {rid: json.loads(options)[telemetry.OPTION] for rid, options in rows}


def test_a_fork_has_its_own_trace_and_run_span(db_url: str, exporter: InMemorySpanExporter) -> None:
    async def main() -> tuple[str, str]:
        yard = define(make_yard(db_url))
        try:
            async with running_worker(yard):
                source = await yard.start("traced", {"tag": "s"})
                assert (await source.wait(timeout=60)).status == RunStatus.SUCCEEDED
                fork = await yard.fork(source.id, 2)
                assert (await fork.wait(timeout=60)).status == RunStatus.SUCCEEDED
            return source.id, fork.id
        finally:
            await yard.aclose()

    source_id, fork_id = asyncio.run(main())
    traces = _traces(db_url, [source_id, fork_id])
    assert traces[source_id]["traceparent"] != traces[fork_id]["traceparent"]
    spans = {
        (s.attributes or {}).get("runyard.run_id"): s
        for s in exporter.get_finished_spans()
        if s.name == "run traced"
    }
    assert set(spans) == {source_id, fork_id}
    assert spans[source_id].context.span_id != spans[fork_id].context.span_id
    assert spans[source_id].context.trace_id != spans[fork_id].context.trace_id


def test_each_fire_of_a_schedule_has_its_own_trace(
    db_url: str, exporter: InMemorySpanExporter
) -> None:
    yard = make_yard(db_url)

    @yard.workflow
    async def tick(ctx: Context) -> str:
        return "ok"

    async def fired() -> list[str] | NotYet:
        runs = (await yard.list_runs(schedule_id="ticks", limit=100)).items
        done = [r.id for r in runs if r.status == RunStatus.SUCCEEDED]
        return done if len(done) >= 3 else NotYet([(r.id, r.status) for r in runs])

    async def main() -> list[str]:
        async with running_worker(yard):
            await yard.create_schedule(
                ScheduleSpec(cron="* * * * * *", workflow="tick"), schedule_id="ticks"
            )
            return await wait_until_async(fired, timeout=30, what="three fires")

    try:
        run_ids = asyncio.run(main())
    finally:
        yard.close()
    traces = _traces(db_url, run_ids)
    assert len({t["traceparent"] for t in traces.values()}) == len(run_ids)
    spans = [s for s in exporter.get_finished_spans() if s.name == "run tick"]
    by_run = {(s.attributes or {}).get("runyard.run_id"): s.context for s in spans}
    assert set(run_ids) <= set(by_run)
    assert len({by_run[r].span_id for r in run_ids}) == len(run_ids)


def test_a_copied_run_takes_a_new_trace_into_its_callback_headers(
    exporter: InMemorySpanExporter,
) -> None:
    """``retraced`` (how a schedule's prepared run is copied per fire): the copy's trace
    and its callback's traceparent are new, a header the trigger named itself is kept."""
    first = telemetry.new_run_trace()
    assert first is not None
    run = NewRun(
        id="template",
        workflow="tick",
        workflow_version="1",
        inputs=[NewInput(input=None)],
        options={"retries": 2, telemetry.OPTION: first},
        callback={
            "url": "https://example.com/hook",
            "headers": {"traceparent": first["traceparent"], "x-mine": "1"},
        },
    )
    copy = retraced(run, "fire-1")
    assert copy.id == "fire-1" and copy.options["retries"] == 2
    new = copy.options[telemetry.OPTION]
    assert new["traceparent"] != first["traceparent"]
    assert copy.callback is not None
    assert copy.callback["headers"] == {"x-mine": "1", "traceparent": new["traceparent"]}
    assert run.options[telemetry.OPTION] is first  # the template is left as it was
    own = {"url": "https://example.com/hook", "headers": {"traceparent": "00-given-by-me"}}
    kept = retraced(
        NewRun(
            id="t2",
            workflow="tick",
            workflow_version="1",
            inputs=[],
            options={telemetry.OPTION: first},
            callback=own,
        ),
        "fire-2",
    )
    assert kept.callback is not None
    assert kept.callback["headers"]["traceparent"] == "00-given-by-me"
