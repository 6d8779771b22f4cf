"""What both clients share, without a server: error mapping, request bodies checked
against the wire models, Server-Sent Events parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from runyard import errors
from runyard.client import Client, Forbidden, RunEvent, Unauthorized
from runyard.client._base import error_class, error_from_response
from runyard.client._sse import SSEDecoder
from runyard.schemas import BulkCancel, ForkIn, RunCreate, TaskExecute, TaskIn, TaskPatch


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_every_error_code_maps_to_its_class() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        mapped = error_class(cls.code, cls.http_status)
        assert mapped.code == cls.code
        if cls.code != "timeout":  # Timeout and RunTimeout share a code
            assert mapped is cls, name
    assert error_class("wait_timeout", 408) is errors.Timeout
    assert error_class("timeout", 500) is errors.RunTimeout
    assert error_class("unauthorized", 401) is Unauthorized
    assert error_class("forbidden", 403) is Forbidden


def test_unknown_codes_fall_back_by_status() -> None:
    assert error_class("something_new", 404) is errors.NotFound
    assert error_class(None, 409) is errors.IllegalTransition
    assert error_class(None, 422) is errors.InvalidInput
    assert error_class(None, 429) is errors.CapacityExceeded
    assert error_class(None, 418) is errors.RunyardError


def test_error_body_becomes_the_exception() -> None:
    exc = error_from_response(
        answer(
            422,
            {"error": {"code": "invalid_input", "message": "bad", "details": [{"field": "x"}]}},
        )
    )
    assert isinstance(exc, errors.InvalidInput)
    assert exc.message == "bad" and exc.details == [{"field": "x"}]
    busy = error_from_response(
        answer(
            429, {"error": {"code": "capacity_exceeded", "message": "m"}}, **{"retry-after": "3"}
        )
    )
    assert isinstance(busy, errors.CapacityExceeded) and busy.retry_after == 3
    proxy = error_from_response(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert type(proxy) is errors.RunyardError and "502" in proxy.message


def bodies(client: Client) -> dict[str, Any]:
    start = client._start_run(
        "wf",
        None,
        "live",
        {
            "inputs": [1, {"input": 2, "custom_data": {"k": 1}}],
            "run_id": "r-1",
            "version": "2",
            "flow_control": {"key": "api", "rate": 5},
            "retries": 2,
            "timeout": 60,
            "priority": 3,
            "sync_mode": "incremental",
            "max_results": 10,
            "delay": 1.5,
            "not_before": datetime(2030, 1, 1, tzinfo=UTC),
            "task_id": "t",
            "wait_timeout": 5,
        },
    )
    execute = client._execute_task(
        "t", {"a": 1}, "async", {"retries": 1, "priority": 2, "run_id": "r-2"}
    )
    return {
        "start": start.body,
        "execute": execute.body,
        "task": client._create_task("wf", {"a": 1}, "n", "t-1", {"retries": 1}).body,
        "patch": client._update_task("t", None, "wf2", {"b": 2}, {"priority": 1}).body,
        "fork": client._fork("r", "step", "r-3", {"x": 1}, "2").body,
        "cancel": client._bulk_cancel(["a"], "wf", "p", None, True).body,
    }


def test_request_bodies_are_valid_wire_models() -> None:
    """Every field the SDK sends is one the server's models accept (they refuse unknown
    fields): the SDK cannot drift from the contract unnoticed."""
    with Client("http://127.0.0.1:9", "k") as client:
        built = bodies(client)
    start = RunCreate.model_validate(built["start"])
    assert start.inputs is not None and start.inputs[1].custom_data == {"k": 1}
    assert start.not_before == datetime(2030, 1, 1, tzinfo=UTC)
    TaskExecute.model_validate(built["execute"])
    TaskIn.model_validate(built["task"])
    patch = TaskPatch.model_validate(built["patch"])
    assert patch.name is None and "name" in patch.model_fields_set  # None clears it
    ForkIn.model_validate(built["fork"])
    BulkCancel.model_validate(built["cancel"])
    with Client("http://127.0.0.1:9", "k") as client:
        auto = client._start_run("wf", {"a": 1}, "async", {}).body
    assert RunCreate.model_validate(auto).run_id  # chosen by the client, for safe retries


def test_list_params() -> None:
    with Client("http://127.0.0.1:9/base/", "k") as client:
        call = client._list_runs(
            "c1", {"status": ["QUEUED", "RUNNING"], "workflow": "wf", "limit": 5}
        )
        assert client._url(call) == "http://127.0.0.1:9/base/v1/runs"
        assert sorted(call.params) == [
            ("cursor", "c1"),
            ("limit", "5"),
            ("status", "QUEUED"),
            ("status", "RUNNING"),
            ("workflow", "wf"),
        ]
        assert client._get_run("a:b/c d").path == "/v1/runs/a%3Ab%2Fc%20d"


def test_sse_decoder() -> None:
    lines = [
        ": ping",
        "event: status",
        "id: 1",
        'data: {"status": "RUNNING"}',
        "",
        "event: output",
        'data: {"a":',
        "data: 1}",
        "",
        "data: plain text",
        "",
        "retry: 1000",
        "event: end",
        "id: 9",
        "data:",
        "",
    ]
    decoder = SSEDecoder()
    events = [e for line in lines if (e := decoder.feed(line)) is not None]
    assert events == [
        RunEvent("status", {"status": "RUNNING"}, "1"),
        RunEvent("output", {"a": 1}, None),
        RunEvent("message", "plain text", None),
        RunEvent("end", None, "9"),
    ]
    assert decoder.last_event_id == "9"


def test_client_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_URL", "http://example.test:1234/")
    monkeypatch.setenv("RUNYARD_API_KEY", "ry_env")
    with Client() as client:
        assert client.base_url == "http://example.test:1234"
        assert client.headers["authorization"] == "Bearer ry_env"
    with Client(api_key="") as client:
        assert "authorization" not in client.headers
