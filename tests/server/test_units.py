"""Pieces of the server that a real client cannot reach on purpose: the last-resort error
boundary, settings from the environment, the step log, and the app factory."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import psycopg
import pytest
from starlette.types import Receive, Scope, Send

from runyard.models import Attempt, StepRecord
from runyard.server import ServerSettings, create_app
from runyard.server.errors import ErrorBoundary
from runyard.service import shape_step_log as step_log


def _boundary_answer(exc: Exception, transient: bool) -> httpx.Response:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    app = ErrorBoundary(failing, is_transient=lambda _e: transient)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/v1/runs")

    return asyncio.run(call())


def test_unexpected_errors_are_500_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="runyard.server"):
        r = _boundary_answer(RuntimeError("boom"), transient=False)
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "internal", "message": "internal server error", "details": None}
    }
    assert "boom" in caplog.text  # the traceback is logged, never sent


def test_a_lost_database_is_503_not_500() -> None:
    r = _boundary_answer(psycopg.OperationalError("server closed the connection"), transient=True)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "store_unavailable"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNYARD_MAX_BODY_BYTES", "RUNYARD_LIVE_CAPACITY", "RUNYARD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    s = ServerSettings.from_env()
    assert (s.max_body_bytes, s.live_capacity, s.api_key, s.db_retry_s) == (1048576, 64, None, 5.0)
    monkeypatch.setenv("RUNYARD_LIVE_CAPACITY", "3")
    monkeypatch.setenv("RUNYARD_API_KEY", "k")
    monkeypatch.setenv("RUNYARD_SERVER_DB_RETRY_S", "0.5")
    s = ServerSettings.from_env()
    assert (s.live_capacity, s.api_key, s.db_retry_s) == (3, "k", 0.5)
    monkeypatch.setenv("RUNYARD_LIVE_CAPACITY", "many")
    with pytest.raises(ValueError, match="RUNYARD_LIVE_CAPACITY must be an integer"):
        ServerSettings.from_env()
    monkeypatch.setenv("RUNYARD_LIVE_CAPACITY", "0")
    with pytest.raises(ValueError, match="positive"):
        ServerSettings.from_env()
    monkeypatch.setenv("RUNYARD_LIVE_CAPACITY", "3")
    for endless in ("nan", "inf"):
        monkeypatch.setenv("RUNYARD_LIVE_WAIT_S", endless)
        with pytest.raises(ValueError, match="RUNYARD_LIVE_WAIT_S must be a positive finite"):
            ServerSettings.from_env()


def test_create_app_refuses_an_unsupported_database_url() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        create_app(settings=ServerSettings(database_url="mysql://x"))


def test_step_log_lists_a_step_still_backing_off() -> None:
    done = StepRecord("r", 0, 1, 1, "fetch", "step", "completed", {"ok": 1}, None, 2, 1.0, 2.0)
    attempts = [
        Attempt("r", 0, 1, "fetch", 1, 0.5, 0.9, {"message": "503"}),
        Attempt("r", 0, 2, "save", 1, 2.0, 2.1, {"message": "locked"}),
        Attempt("r", 0, 2, "save", 2, 2.5, 2.6, {"message": "locked again"}),
    ]
    steps = step_log([done], attempts, terminal=False, iteration=1)
    assert [(s.name, s.status, s.attempts, len(s.failed_attempts)) for s in steps] == [
        ("fetch", "completed", 2, 1),
        ("save", "retrying", 2, 2),
    ]
    assert steps[0].duration_s == 1.0 and steps[1].error == {"message": "locked again"}
    assert step_log([done], attempts, terminal=True, iteration=1)[1].status == "failed"


def test_step_log_lists_the_retried_attempts_of_the_workflow_body() -> None:
    body = [Attempt("r", 0, 0, "enrich", 1, 0.1, 0.2, {"message": "reset"})]
    (running,) = step_log([], body, terminal=False, iteration=1)
    assert (running.position, running.kind, running.status) == (0, "workflow", "retrying")
    (ended,) = step_log([], body, terminal=True, iteration=1)
    assert (ended.kind, ended.status, ended.attempts) == ("workflow", "retried", 1)


def test_every_field_of_a_waiter_is_described_in_openapi(tmp_path: Path) -> None:
    app = create_app(settings=ServerSettings(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    waiter = app.openapi()["components"]["schemas"]["WaiterOut"]
    assert set(waiter["properties"]) == {"run_id", "item", "since", "deadline"}
    for name, prop in waiter["properties"].items():
        assert prop.get("description"), name
