"""Retries with backoff on 429 and 503 (honouring ``Retry-After``) and on connection
errors, against a real HTTP server process on loopback that answers from a script; and
``wait_for_completion`` waiting out a real server too busy for its long-polls."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import CapacityExceeded, StoreUnavailable, Timeout, keys
from runyard.client import AsyncClient, Client, ServerUnreachable
from tests.client.support import ServerProcess, cli_env, free_port, wait_published
from tests.conftest import ROOT, WorkerProcess
from tests.waiting import wait_until

HEALTH = {"status": "ok", "database": "sqlite", "version": "0.1.0"}
UNAVAILABLE = {"error": {"code": "store_unavailable", "message": "db away", "details": None}}
BUSY = {"error": {"code": "capacity_exceeded", "message": "busy", "details": None}}
RUN = {
    "id": "r1",
    "workflow": "wf",
    "workflow_version": "1",
    "mode": "async",
    "status": "QUEUED",
    "priority": 0,
    "input_count": 1,
    "iteration": 0,
    "credits": 0,
    "recovery_attempts": 0,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}

Stub = Callable[[list[list[Any]]], str]


@pytest.fixture
def stub() -> Iterator[Stub]:
    """Starts ``tests/client/stub_server.py`` with a script; its URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(script: list[list[Any]]) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.client.stub_server", str(port), json.dumps(script)],
            stdout=subprocess.PIPE,
            cwd=str(ROOT),
            env=cli_env(),
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def requests_seen(url: str) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = httpx.get(url + "/_log").json()
    return answer


def test_503_then_200_is_retried(stub: Stub) -> None:
    url = stub([[503, {"Retry-After": "0"}, UNAVAILABLE]] * 2 + [[200, {}, RUN]])
    with Client(url, "ry_key", backoff_s=0.01) as client:
        assert client.get_run("r1").status == "QUEUED"
    seen = requests_seen(url)
    assert [r["path"] for r in seen] == ["/v1/runs/r1"] * 3
    assert seen[0]["auth"] == "Bearer ry_key"


def test_health_answers_at_once(stub: Stub) -> None:
    # a health check reports the 503 instead of waiting for the database to come back
    down = {**HEALTH, "status": "unavailable"}
    url = stub([[503, {"Retry-After": "1"}, down], [200, {}, HEALTH]])
    with Client(url, "k") as client:
        assert client.health().status == "unavailable"
        assert client.health().status == "ok"
    assert len(requests_seen(url)) == 2


def test_retry_after_is_honoured_for_a_post(stub: Stub) -> None:
    url = stub([[429, {"Retry-After": "1"}, BUSY], [201, {}, RUN]])
    started = time.monotonic()
    with Client(url, "k", backoff_s=0.01) as client:
        run = client.start_run("wf", {"x": 1})
    assert run.id == "r1"
    assert time.monotonic() - started >= 0.9  # waited as told, not the tiny backoff
    first, second = requests_seen(url)
    assert first["method"] == second["method"] == "POST"
    # the client chose the run id, so the retry cannot start a second run
    assert json.loads(first["body"])["run_id"] == json.loads(second["body"])["run_id"]


def test_retries_give_up_with_the_typed_error(stub: Stub) -> None:
    url = stub([[503, {"Retry-After": "0"}, UNAVAILABLE]])
    with Client(url, "k", max_retries=2, backoff_s=0.01) as client, pytest.raises(StoreUnavailable):
        client.get_run("r1")
    assert len(requests_seen(url)) == 3
    url = stub([[429, {"Retry-After": "7"}, BUSY]])
    with Client(url, "k", max_retries=0) as client, pytest.raises(CapacityExceeded) as info:
        client.get_run("r1")
    assert info.value.retry_after == 7


def test_errors_that_are_not_retried(stub: Stub) -> None:
    # a 500 is an answer: repeating the request would not change it
    url = stub([[500, {}, {"error": {"code": "internal", "message": "bug", "details": None}}]])
    with Client(url, "k", backoff_s=0.01) as client, pytest.raises(Exception) as info:
        client.get_run("r1")
    assert "bug" in str(info.value) and len(requests_seen(url)) == 1


def test_connection_refused_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with (
        Client(url, "k", max_retries=2, backoff_s=0.05) as client,
        pytest.raises(ServerUnreachable) as info,
    ):
        client.get_run("r1")
    assert time.monotonic() - started >= 0.05 + 0.1 / 2  # two backoffs, jittered
    assert url in info.value.message


def test_async_client_retries(stub: Stub) -> None:
    url = stub([[503, {"Retry-After": "0"}, UNAVAILABLE], [200, {}, RUN]])

    async def main() -> None:
        async with AsyncClient(url, "k", backoff_s=0.01) as client:
            assert (await client.get_run("r1")).id == "r1"

    asyncio.run(main())
    assert len(requests_seen(url)) == 2


def test_wait_for_completion_waits_out_503_on_the_long_poll(stub: Stub) -> None:
    # More 503s (no Retry-After: a backoff) than max_retries, then the run's status and
    # its end: the wait goes on through all of them.
    status = {"id": "r1", "status": "RUNNING", "terminal": False, "updated_at": RUN["updated_at"]}
    done = {**RUN, "status": "SUCCEEDED", "result": 7}
    url = stub([[503, {}, UNAVAILABLE]] * 3 + [[202, {}, status], [200, {}, done]])
    with Client(url, "k", max_retries=0, backoff_s=0.01) as client:
        assert client.wait_for_completion("r1", timeout=30).result == 7
    seen = requests_seen(url)
    assert [r["path"].split("?")[0] for r in seen] == ["/v1/runs/r1/result"] * 5

    async def main() -> None:
        async with AsyncClient(url, "k", max_retries=0, backoff_s=0.01) as client:
            assert (await client.wait_for_completion("r1", timeout=30)).result == 7

    url = stub([[503, {}, UNAVAILABLE]] * 3 + [[200, {}, done]])
    asyncio.run(main())
    assert len(requests_seen(url)) == 4

    # Refused until its timeout, even a Retry-After longer than it: Timeout, on time.
    url = stub([[503, {"Retry-After": "30"}, UNAVAILABLE]])
    started = time.monotonic()
    with Client(url, "k", max_retries=0) as client, pytest.raises(Timeout) as info:
        client.wait_for_completion("r1", timeout=1)
    assert 1 <= time.monotonic() - started < 3
    assert info.value.details == {"run_id": "r1", "status": None, "refused": "store_unavailable"}
    assert isinstance(info.value.__cause__, StoreUnavailable)


@pytest.fixture
def busy_server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server that serves one live wait at a time (the next gets 429 with
    ``Retry-After``), with a real worker serving tests.apps.client_app."""
    server = ServerProcess(
        db_url, tmp_path / "server.log", keys.generate(), RUNYARD_LIVE_CAPACITY="1"
    )
    worker = WorkerProcess("tests.apps.client_app:yard", db_url, log=tmp_path / "worker.log")
    try:
        worker.start()
        server.start()
        wait_published(server.url, server.api_key, {"waiter"})
        yield server
    finally:
        server.stop()
        worker.terminate(timeout=15)


def _hold_the_live_slot(server: ServerProcess, run_id: str) -> threading.Thread:
    """A long-poll of ``run_id``'s result that takes the server's only live slot (until
    the run ends); returns once other waits are refused with 429."""
    headers = {"x-api-key": server.api_key}
    url = f"{server.url}/v1/runs/{run_id}/result"

    def hold() -> None:
        # (refused while a probe below holds the slot for its tenth of a second; once
        # taken, the slot is held until the run ends)
        wait_until(
            lambda: (
                httpx.get(url, params={"timeout": 60}, headers=headers, timeout=70).status_code
                != 429
            ),
            timeout=10,
            interval=0.01,
            what="the live slot taken",
        )

    holder = threading.Thread(target=hold)
    holder.start()
    wait_until(
        lambda: httpx.get(url, params={"timeout": 0.1}, headers=headers).status_code == 429,
        timeout=10,
        interval=0,
        what="the holder holding the live slot",
    )
    return holder


def _notify_later(server: ServerProcess, event_id: str, after_s: float) -> threading.Timer:
    timer = threading.Timer(
        after_s,
        httpx.post,
        args=(f"{server.url}/v1/events/{event_id}",),
        kwargs={"json": {"data": event_id}, "headers": {"x-api-key": server.api_key}},
    )
    timer.start()
    return timer


def test_wait_for_completion_waits_out_429_on_the_long_poll(busy_server: ServerProcess) -> None:
    # Every long-poll is refused (429, Retry-After 1) while another wait holds the only
    # live slot: more refusals than max_retries, and yet the wait goes on until the run
    # ends, or ends with Timeout (not CapacityExceeded) at its own timeout.
    server = busy_server
    with Client(server.url, server.api_key, max_retries=1, backoff_s=0.01) as client:
        for name in ("sync", "sync-late", "async", "async-late"):
            client.start_run("waiter", f"go-{name}", run_id=f"w-{name}")

        holder = _hold_the_live_slot(server, "w-sync")
        timer = _notify_later(server, "go-sync", 2.5)
        started = time.monotonic()
        run = client.wait_for_completion("w-sync", timeout=30)
        assert run.status == "SUCCEEDED" and run.result == "go-sync"
        assert time.monotonic() - started >= 2.0  # it was refused until the run ended
        timer.join()
        holder.join(30)

        holder = _hold_the_live_slot(server, "w-sync-late")
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            client.wait_for_completion("w-sync-late", timeout=2.5)
        assert 2.4 <= time.monotonic() - started < 5  # its own timeout
        assert info.value.details["run_id"] == "w-sync-late"
        _notify_later(server, "go-sync-late", 0).join()
        holder.join(30)

    async def main() -> None:
        async with AsyncClient(server.url, server.api_key, max_retries=1) as client:
            holder = _hold_the_live_slot(server, "w-async")
            timer = _notify_later(server, "go-async", 2.5)
            run = await client.wait_for_completion("w-async", timeout=30)
            assert run.status == "SUCCEEDED" and run.result == "go-async"
            timer.join()
            holder.join(30)

            holder = _hold_the_live_slot(server, "w-async-late")
            with pytest.raises(Timeout) as info:
                await client.wait_for_completion("w-async-late", timeout=1.5)
            assert info.value.details["run_id"] == "w-async-late"
            _notify_later(server, "go-async-late", 0).join()
            holder.join(30)

    asyncio.run(main())
