"""Retries with backoff on 429 and 503 (honouring ``Retry-After``) and on connection
errors, against a real HTTP server process on loopback that answers from a script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from runyard import CapacityExceeded, StoreUnavailable
from runyard.client import AsyncClient, Client, ServerUnreachable
from tests.client.support import cli_env, free_port
from tests.conftest import ROOT

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
