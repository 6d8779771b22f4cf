"""The other resources over a real server and worker: workflows (with the live workers
serving them), outputs paged to the end, the event stream, tasks, events and waiters,
usage and metrics."""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import WorkerProcess
from tests.server.conftest import (
    Keys,
    ServerFactory,
    client,
    start_worker,
    wait_published,
    wait_status,
)
from tests.waiting import stays_true, wait_until


def _sse(
    api: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> list[tuple[str, Any]]:
    """Every event of a stream until it ends: (event, data) pairs."""
    events: list[tuple[str, Any]] = []
    with api.stream("GET", path, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                assert name is not None
                events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_workflows_outputs_stream_tasks_events_usage_metrics(
    db_url: str,
    tmp_path: Path,
    server_factory: ServerFactory,
    api_keys: Keys,
    worker_procs: list[WorkerProcess],
) -> None:
    server = server_factory()
    worker = start_worker(worker_procs, db_url, tmp_path)
    with client(server, api_keys.write) as api, client(server, api_keys.read) as reader:
        wait_published(api, "greet", "emitter", "waiter")
        names = [w["name"] for w in api.get("/v1/workflows").json()["items"]]
        assert {"greet", "emitter", "sleeper", "waiter", "gated", "counter", "exclusive"} <= set(
            names
        )
        greet = api.get("/v1/workflows/greet").json()
        assert greet["input_schema"]["properties"]["name"]["type"] == "string"
        assert greet["description"].startswith("Say hello")
        assert [w["pid"] for w in greet["workers"]] == [worker.pid]
        assert api.get("/v1/workflows/nope").status_code == 404

        # Outputs page through X-Pagination-Next: exactly what was emitted, in order.
        run = api.post("/v1/runs", json={"workflow": "emitter", "input": 237}).json()["id"]
        wait_status(api, run, "SUCCEEDED")
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 50}
        while True:
            r = reader.get(f"/v1/runs/{run}/outputs", params=params)
            assert r.status_code == 200
            seen.extend(o["data"]["i"] for o in r.json()["items"])
            if "x-pagination-next" not in r.headers:
                assert r.json()["next_cursor"] is None
                break
            params["cursor"] = r.headers["x-pagination-next"]
        assert seen == list(range(237))
        assert reader.get(f"/v1/runs/{run}/outputs", params={"cursor": "x"}).status_code == 422

        # The event stream of a finished run: its status, progress, outputs, then end; a
        # reconnect with Last-Event-ID resumes after that output.
        events = _sse(reader, f"/v1/runs/{run}/events")
        kinds = [name for name, _ in events]
        assert kinds[0] == "status" and kinds[-1] == "end"
        assert [d["data"]["i"] for n, d in events if n == "output"] == list(range(237))
        assert ("progress", {"progress": 1.0, "message": "emitted"}) in events
        assert events[-1][1]["status"] == "SUCCEEDED"
        outputs = [d for n, d in events if n == "output"]
        resumed = _sse(reader, f"/v1/runs/{run}/events", {"last-event-id": str(outputs[199]["id"])})
        assert [d["data"]["i"] for n, d in resumed if n == "output"] == list(range(200, 237))

        # ... and of a live one, following it to the end.
        waiting = api.post("/v1/runs", json={"workflow": "waiter", "input": "approve/ev-7"}).json()[
            "id"
        ]
        wait_status(api, waiting, "RUNNING")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            stream = pool.submit(_sse, reader, f"/v1/runs/{waiting}/events")
            waiters = wait_until(
                lambda: reader.get("/v1/events/approve/ev-7/waiters").json()["items"],
                timeout=20,
                what="a waiter of approve/ev-7",
            )
            assert [w["run_id"] for w in waiters] == [waiting]
            assert api.post("/v1/events/approve%2Fev-7", json={"data": "go"}).json()["woken"] == [
                waiting
            ]
            live_events = stream.result(30)
        assert live_events[0][0] == "status" and live_events[0][1]["status"] == "RUNNING"
        assert live_events[-1] == ("end", live_events[-1][1])
        assert live_events[-1][1]["result"] == "go"
        assert api.get("/v1/runs/nope/events").status_code == 404

        # Steps, with their attempts.
        steps = reader.get(f"/v1/runs/{waiting}/steps").json()["items"]
        assert [s["kind"] for s in steps] and steps[0]["attempts"] >= 1

        # Tasks: create, read, list, patch, execute (live), delete.
        r = api.post(
            "/v1/tasks",
            json={
                "id": "hello",
                "name": "say hello",
                "workflow": "greet",
                "input": {"name": "tk"},
                "options": {"priority": 3},
            },
        )
        assert r.status_code == 201, r.text
        assert api.post("/v1/tasks", json={"id": "hello", "workflow": "greet"}).status_code == 200
        bad = api.post("/v1/tasks", json={"workflow": "greet", "input": {"name": 1}})
        assert bad.status_code == 422
        assert api.post("/v1/tasks", json={"workflow": "nope"}).status_code == 404
        assert (
            api.post(
                "/v1/tasks", json={"id": "second", "workflow": "emitter", "input": 1}
            ).status_code
            == 201
        )
        page = reader.get("/v1/tasks", params={"limit": 1})
        assert [t["id"] for t in page.json()["items"]] == ["hello"]
        assert page.headers["x-pagination-next"] == "hello"
        nxt = reader.get("/v1/tasks", params={"limit": 1, "cursor": "hello"}).json()
        assert [t["id"] for t in nxt["items"]] == ["second"] and nxt["next_cursor"] is None
        r = api.patch(
            "/v1/tasks/hello",
            json={"input": {"name": "patched", "times": 2}, "options": {"retries": 1}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["options"] == {"priority": 3, "retries": 1}
        assert api.patch("/v1/tasks/hello", json={"input": {"times": 99}}).status_code == 422
        r = api.post("/v1/tasks/hello/execute", json={"mode": "live"})
        assert r.status_code == 200, r.text
        live = r.json()["run"]
        assert live["task_id"] == "hello" and live["priority"] == 3
        assert live["result"] == {"greeting": "hello patched", "times": 2}
        r = api.post(
            "/v1/tasks/hello/execute", json={"input": {"name": "over"}, "run_id": "from-task"}
        )
        assert r.status_code == 201 and r.json()["task_id"] == "hello"
        wait_status(api, "from-task", "SUCCEEDED")
        assert api.get("/v1/runs/from-task").json()["result"]["greeting"] == "hello over"
        assert [
            r["id"] for r in reader.get("/v1/runs", params={"task_id": "hello"}).json()["items"]
        ] == [
            "from-task",
            live["id"],
        ]
        assert api.delete("/v1/tasks/second").status_code == 204
        assert api.delete("/v1/tasks/second").status_code == 404
        assert api.get("/v1/tasks/second").status_code == 404
        assert api.post("/v1/tasks/second/execute", json={}).status_code == 404

        # Usage: the credits the greet runs charged (2 + 1).
        usage = reader.get("/v1/usage").json()
        assert usage["by_action"] == {"greeting": 3.0} and usage["total"] == 3.0
        assert usage["by_workflow"] == {"greet": 3.0} and sum(usage["by_day"].values()) == 3.0
        assert reader.get("/v1/usage", params={"workflow": "emitter"}).json()["total"] == 0
        assert (
            reader.get(
                "/v1/usage",
                params={"since": "2030-01-01T00:00:00Z", "until": "2029-01-01T00:00:00Z"},
            ).status_code
            == 422
        )

        # Metrics: requests by route and status, runs created, runs by status.
        text = reader.get("/metrics").text
        assert (
            'runyard_http_requests_total{method="GET",route="/v1/runs/{run_id}/status",status="200"}'
            in text
        )
        assert 'runyard_runs_created_total{mode="live",workflow="greet"} 1.0' in text
        assert 'runyard_runs{status="QUEUED"}' in text
        assert 'runyard_runs_ended_total{status="SUCCEEDED"}' in text
        assert "runyard_live_waits_in_progress 0.0" in text

        health = httpx.get(server.url + "/healthz").json()
        assert health["status"] == "ok" and health["database"] in ("sqlite", "postgres")


def _metric(api: httpx.Client, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_metrics_count_open_runs_and_runs_ended_since_the_server_started(
    db_url: str,
    tmp_path: Path,
    server_factory: ServerFactory,
    api_keys: Keys,
    worker_procs: list[WorkerProcess],
) -> None:
    """Runs not ended are counted by status at each scrape; ended ones are counted once
    each, from the transitions recorded since counting started (no count of history)."""
    server = server_factory()
    start_worker(worker_procs, db_url, tmp_path)
    with client(server, api_keys.write) as api:
        wait_published(api, "greet", "waiter")
        before = api.post("/v1/runs", json={"workflow": "greet", "input": {"name": "a"}})
        wait_status(api, before.json()["id"], "SUCCEEDED")
        # Older than the 2 s after which an ended run's transition is counted (time is what
        # the rule is about): counted now if counting took in the history.
        time.sleep(2.1)
        succeeded = 'runyard_runs_ended_total{status="SUCCEEDED"}'
        assert _metric(api, succeeded) == 0  # counting starts at the first scrape
        waiting = api.post("/v1/runs", json={"workflow": "waiter", "input": "never"}).json()
        ids = [
            api.post("/v1/runs", json={"workflow": "greet", "input": {"name": f"n{i}"}}).json()[
                "id"
            ]
            for i in range(3)
        ]
        for run_id in ids:
            wait_status(api, run_id, "SUCCEEDED")
        wait_status(api, waiting["id"], "RUNNING")
        assert _metric(api, 'runyard_runs{status="RUNNING"}') == 1
        wait_until(
            lambda: _metric(api, succeeded) >= 3,
            timeout=10,
            interval=0.2,
            what="3 succeeded runs counted",
        )
        assert _metric(api, succeeded) == 3
        # Each counted once: scraped until their transitions are past the 2 s, and after.
        stays_true(
            lambda: _metric(api, succeeded) == 3,
            for_s=2.1,
            interval=0.5,
            what="3 succeeded runs counted, once each",
        )
        assert api.post(f"/v1/runs/{waiting['id']}/cancel").status_code == 200
        canceled = 'runyard_runs_ended_total{status="CANCELED"}'
        wait_until(
            lambda: _metric(api, canceled) >= 1, timeout=10, interval=0.2, what="a canceled run"
        )
        assert _metric(api, canceled) == 1
        assert _metric(api, 'runyard_runs{status="RUNNING"}') == 0
