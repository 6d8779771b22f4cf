"""One trace from the trigger to the last step across real processes (both backends): a
server and worker processes configured by ``OTEL_*`` variables write their finished
spans to files (the test hook ``RUNYARD_OTEL_SPAN_FILE``: the SDK's console exporter into
a file), and a loopback receiver records what callbacks and an HTTP-target run send."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from runyard import keys
from runyard.client import Client
from runyard.telemetry import SPAN_FILE_ENV
from tests.callbacks.receiver import Receiver
from tests.client.support import ServerProcess, wait_published
from tests.conftest import WorkerProcess, raw_sql
from tests.waiting import NotYet, wait_until

APP = "tests.telemetry.app:yard"
#: Tracing on (no exporter but the test hook's file), callbacks to loopback allowed.
TRACED = {
    "OTEL_TRACES_EXPORTER": "none",
    "RUNYARD_OUTBOUND_ALLOW": "127.0.0.0/8",
    "RUNYARD_CALLBACK_RETRY_SCALE": "0.02",
}


@pytest.fixture(autouse=True)
def _no_otel_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processes get only the OTEL_* variables a test gives them."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def spans(path: Path) -> list[dict[str, Any]]:
    """The spans a process wrote to its file."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def named(found: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in found if s["name"] == name]


def hexid(value: str) -> str:
    """A span's id as the JSON export writes it (0x...) in W3C form (bare hex)."""
    return value.removeprefix("0x")


def post(server: ServerProcess, body: dict[str, Any], traceparent: str) -> str:
    answer = httpx.post(
        server.url + "/v1/runs",
        json=body,
        headers={"x-api-key": server.api_key, "traceparent": traceparent, "tracestate": "t=1"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def wait_succeeded(server: ServerProcess, run_id: str) -> None:
    def ended() -> bool | NotYet:
        run = httpx.get(
            f"{server.url}/v1/runs/{run_id}", headers={"x-api-key": server.api_key}, timeout=5
        ).json()
        if run["status"] in ("SUCCEEDED", "FAILED", "CRASHED", "CANCELED"):
            assert run["status"] == "SUCCEEDED", run
            return True
        return NotYet(run["status"])

    wait_until(ended, timeout=60, what=f"run {run_id} ended")


def test_one_trace_from_the_trigger_through_a_crash_to_the_callback(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess], receiver: Receiver
) -> None:
    files = {p: tmp_path / f"{p}.spans" for p in ("server", "a", "b")}

    def worker(name: str) -> WorkerProcess:
        env = {**TRACED, "OTEL_SERVICE_NAME": f"worker-{name}", SPAN_FILE_ENV: str(files[name])}
        w = WorkerProcess(APP, db_url, env=env, log=tmp_path / f"worker-{name}.log")
        worker_procs.append(w)
        return w.start()

    server = ServerProcess(
        db_url,
        tmp_path / "server.log",
        keys.generate(),
        **TRACED,
        OTEL_SERVICE_NAME="runyard-server",
        **{SPAN_FILE_ENV: str(files["server"])},
    )
    first = worker("a")
    server.start()
    try:
        wait_published(server.url, server.api_key, {"resumable", "http", "modules"})
        trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
        marker = tmp_path / "held"
        run_id = post(
            server,
            {
                "workflow": "resumable",
                "input": {"marker": str(marker)},
                "callback": {"url": receiver.url("/hook")},
            },
            f"00-{trace_id}-{caller}-01",
        )
        wait_until(marker.exists, timeout=30, what="the step held by worker a")
        first.kill()  # mid-step: the run is resumed by another worker
        worker("b")
        wait_succeeded(server, run_id)

        def finished() -> list[Any] | NotYet:
            got = [r for r in receiver.snapshot() if r.path == "/hook"]
            kinds = [r.json["type"] for r in got]
            return got if "run.finished" in kinds else NotYet(kinds)

        hooks = wait_until(finished, timeout=30, what="the final callback")
        # An HTTP-target run passes its trace on to the URL it calls.
        target_trace = secrets.token_hex(16)
        target_run = post(
            server,
            {"url": {"url": receiver.url("/target"), "body": {"n": 1}}},
            f"00-{target_trace}-{secrets.token_hex(8)}-01",
        )
        wait_succeeded(server, target_run)
        # The SDK sends the trace of the caller's current span with its requests.
        with (
            TracerProvider().get_tracer("test").start_as_current_span("sdk caller") as span,
            Client(server.url, api_key=server.api_key) as client,
        ):
            sdk_run = client.start_run("modules", {}).id
        sdk_caller = span.get_span_context()
        wait_succeeded(server, sdk_run)
    finally:
        server.stop()

    # A run's span is written by its worker just after the outcome it sees committed.
    def ended_runs() -> list[dict[str, Any]] | NotYet:
        found = spans(files["b"])
        ids = {s["attributes"].get("runyard.run_id") for s in found if s["name"].startswith("run ")}
        return found if {run_id, target_run, sdk_run} <= ids else NotYet(ids)

    on_b = wait_until(ended_runs, timeout=30, what="the runs' spans")
    served, on_a = spans(files["server"]), spans(files["a"])
    # The server's span of the trigger: a child of the caller's span, in its trace.
    (request,) = [
        s for s in named(served, "POST /v1/runs") if hexid(s["context"]["trace_id"]) == trace_id
    ]
    assert request["kind"] == "SpanKind.SERVER"
    assert hexid(request["parent_id"]) == caller
    assert request["resource"]["attributes"]["service.name"] == "runyard-server"
    # The run's span, recorded by the worker whose outcome ended the run (b), a child of
    # the request's span.
    (run,) = named(on_b, "run resumable")
    assert hexid(run["context"]["trace_id"]) == trace_id
    assert run["parent_id"] == request["context"]["span_id"]
    assert run["attributes"]["runyard.run_id"] == run_id
    assert run["attributes"]["runyard.status"] == "SUCCEEDED"
    run_span = hexid(run["context"]["span_id"])
    # Each step attempt: in the worker that ran it, a child of the run's span. Worker a
    # ran "before" and was killed inside "hold" (that attempt never ended); b ran "hold"
    # again and replayed "before" (no new attempt).
    (before,) = named(on_a, "step before")
    (hold,) = named(on_b, "step hold")
    assert named(on_a, "step hold") == [] and named(on_b, "step before") == []
    for step, name in ((before, "before"), (hold, "hold")):
        assert hexid(step["context"]["trace_id"]) == trace_id
        assert hexid(step["parent_id"]) == run_span
        assert step["attributes"]["runyard.run_id"] == run_id
        assert step["attributes"]["runyard.workflow"] == "resumable"
        assert step["attributes"]["runyard.step"] == name
        assert step["attributes"]["runyard.attempt"] == 1
        assert step["attributes"]["runyard.outcome"] == "completed"
    assert before["resource"]["attributes"]["service.name"] == "worker-a"
    assert hold["resource"]["attributes"]["service.name"] == "worker-b"
    # Every callback delivery carries the run's span as its parent, and the tracestate.
    assert hooks and all(
        h.headers.get("traceparent") == f"00-{trace_id}-{run_span}-01" for h in hooks
    ), [h.headers.get("traceparent") for h in hooks]
    assert all(h.headers.get("tracestate") == "t=1" for h in hooks)
    # The HTTP-target request: in the caller's trace, under its run's span.
    (called,) = [r for r in receiver.snapshot() if r.path == "/target"]
    (target_span,) = [
        s for s in named(on_b, "run http") if s["attributes"]["runyard.run_id"] == target_run
    ]
    assert called.headers["traceparent"] == (
        f"00-{target_trace}-{hexid(target_span['context']['span_id'])}-01"
    )
    (sdk_request,) = [
        s
        for s in named(served, "POST /v1/runs")
        if int(s["context"]["trace_id"], 16) == sdk_caller.trace_id
    ]
    assert int(sdk_request["parent_id"], 16) == sdk_caller.span_id
    (sdk_run_span,) = named(on_b, "run modules")
    assert sdk_run_span["parent_id"] == sdk_request["context"]["span_id"]
    assert sdk_run_span["attributes"]["runyard.run_id"] == sdk_run
    # The trace context is stored with the run.
    stored = raw_sql(db_url, "SELECT options FROM runs WHERE id = %s", (run_id,))
    assert f"00-{trace_id}-{run_span}-01" in str(stored[0][0])


def test_with_otel_unset_nothing_is_traced_and_the_worker_loads_no_opentelemetry(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess], receiver: Receiver
) -> None:
    files = {p: tmp_path / f"{p}.spans" for p in ("server", "worker")}
    hook = {k: v for k, v in TRACED.items() if not k.startswith("OTEL_")}
    server = ServerProcess(
        db_url,
        tmp_path / "server.log",
        keys.generate(),
        **hook,
        **{SPAN_FILE_ENV: str(files["server"])},
    )
    w = WorkerProcess(
        APP,
        db_url,
        env={**hook, SPAN_FILE_ENV: str(files["worker"])},
        log=tmp_path / "worker.log",
    )
    worker_procs.append(w)
    w.start()
    server.start()
    try:
        wait_published(server.url, server.api_key, {"modules"})
        trace_id = secrets.token_hex(16)
        run_id = post(
            server,
            {"workflow": "modules", "input": {}, "callback": {"url": receiver.url("/hook")}},
            f"00-{trace_id}-{secrets.token_hex(8)}-01",
        )
        wait_succeeded(server, run_id)
        result = httpx.get(
            f"{server.url}/v1/runs/{run_id}", headers={"x-api-key": server.api_key}, timeout=5
        ).json()["result"]

        def finished() -> list[Any] | NotYet:
            got = [r for r in receiver.snapshot() if r.path == "/hook"]
            kinds = [r.json["type"] for r in got]
            return got if "run.finished" in kinds else NotYet(kinds)

        hooks = wait_until(finished, timeout=30, what="the final callback")
    finally:
        server.stop()
    # The real worker that ran the step had loaded no opentelemetry module at all.
    assert result == []
    assert not files["server"].exists() and not files["worker"].exists()
    assert all("traceparent" not in h.headers for h in hooks)
    stored = raw_sql(db_url, "SELECT options FROM runs WHERE id = %s", (run_id,))
    assert "traceparent" not in str(stored[0][0])
