"""What a client application does with the API: start a run, keep only its id, survive
a restart of the server, and get the result by id (polling, or long-polling that is
woken the moment the run ends in a worker process)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import WorkerProcess
from tests.server.conftest import (
    Keys,
    ServerFactory,
    client,
    publish_without_worker,
    start_worker,
    wait_published,
)
from tests.waiting import NotYet, wait_until


def test_start_keep_the_id_restart_and_fetch_the_result(
    db_url: str,
    tmp_path: Path,
    server_factory: ServerFactory,
    api_keys: Keys,
    worker_procs: list[WorkerProcess],
) -> None:
    # A long polling backstop: only a real wake-up can answer the long-poll quickly.
    server = server_factory(RUNYARD_POLL_S="5")
    start_worker(worker_procs, db_url, tmp_path)
    with client(server, api_keys.write) as api:
        wait_published(api, "greet", "waiter")

        # Start, keep only the id (idempotent: the same run_id starts nothing twice).
        r = api.post(
            "/v1/runs", json={"workflow": "greet", "input": {"name": "ann"}, "run_id": "order-1"}
        )
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/v1/runs/order-1"
        assert r.json()["status"] in ("QUEUED", "RUNNING", "SUCCEEDED")
        again = api.post(
            "/v1/runs", json={"workflow": "greet", "input": {"name": "ann"}, "run_id": "order-1"}
        )
        assert again.status_code == 200 and again.json()["id"] == "order-1"
        # The same id with another input is not the same request: refused, nothing lost.
        other = api.post(
            "/v1/runs", json={"workflow": "greet", "input": {"name": "bob"}, "run_id": "order-1"}
        )
        assert other.status_code == 409, other.text
        assert other.json()["error"]["code"] == "run_id_conflict"

        waiting = api.post("/v1/runs", json={"workflow": "waiter", "input": "go:1"}).json()["id"]

    # The client process (and the server) restart; the id is all that is left.
    server.restart()
    with client(server, api_keys.read) as api:
        # Poll the lightweight status until terminal.
        def terminal() -> dict[str, Any] | NotYet:
            status: dict[str, Any] = api.get("/v1/runs/order-1/status").json()
            return status if status["terminal"] is not False else NotYet(status)

        status = wait_until(terminal, timeout=30, what="order-1 terminal")
        assert status["status"] == "SUCCEEDED"
        result = api.get("/v1/runs/order-1/result")
        assert result.status_code == 200
        assert result.json()["result"] == {"greeting": "hello ann", "times": 1}
        run = api.get("/v1/runs/order-1").json()
        assert run["credits"] == 1.0 and run["workflow"] == "greet"

        # Still waiting for its event: 202 with its status, at once or after a timeout.
        r = api.get(f"/v1/runs/{waiting}/result")
        assert r.status_code == 202 and r.json()["status"] == "RUNNING"
        started = time.monotonic()
        r = api.get(f"/v1/runs/{waiting}/result", params={"timeout": 0.5})
        assert r.status_code == 202 and 0.4 < time.monotonic() - started < 3

    # A long-poll answers within moments of the run finishing in the worker process.
    with (
        client(server, api_keys.read) as reader,
        client(server, api_keys.write) as writer,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        poll = pool.submit(reader.get, f"/v1/runs/{waiting}/result", params={"timeout": 60})
        wait_until(lambda: _live_waits(reader) == 1, timeout=10, what="the long-poll waiting")
        assert not poll.done()
        woken = writer.post("/v1/events/go:1", json={"data": {"ok": True}})
        assert woken.status_code == 200 and woken.json()["woken"] == [waiting]
        notified = time.monotonic()
        answer = poll.result(timeout=30)
        latency = time.monotonic() - notified
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "SUCCEEDED" and answer.json()["result"] == {"ok": True}
        # The server polls every 5 s here: only the hub's wake-up explains a fast answer.
        assert latency < 2.0, latency


def _live_waits(api: httpx.Client) -> float:
    """The server's count of requests waiting for a run (live runs and long-polls)."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("runyard_live_waits_in_progress "):
            return float(line.split()[1])
    raise AssertionError("no runyard_live_waits_in_progress in /metrics")


def test_a_stopping_server_answers_its_waiting_clients(
    db_url: str, server_factory: ServerFactory, api_keys: Keys
) -> None:
    """SIGTERM: a long-poll answers 202 at once and an event stream ends, so the server
    stops within moments (not after their waits) and exits cleanly."""
    publish_without_worker(db_url)  # no worker: the run stays QUEUED
    server = server_factory()
    with (
        client(server, api_keys.write) as api,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        run_id = api.post("/v1/runs", json={"workflow": "sleeper", "input": 1}).json()["id"]

        streaming = threading.Event()

        def stream() -> list[str]:
            with api.stream("GET", f"/v1/runs/{run_id}/events") as r:
                lines = []
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        lines.append(line)
                    streaming.set()  # (the stream is open and has begun)
                return lines

        poll = pool.submit(api.get, f"/v1/runs/{run_id}/result", params={"timeout": 60})
        events = pool.submit(stream)
        wait_until(lambda: _live_waits(api) == 1, timeout=10, what="the long-poll waiting")
        assert streaming.wait(10), "the event stream did not begin"
        assert not poll.done() and not events.done()
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 4
        answer = poll.result(10)
        assert answer.status_code == 202 and answer.json()["status"] == "QUEUED"
        assert events.result(10)[0] == "event: status"
