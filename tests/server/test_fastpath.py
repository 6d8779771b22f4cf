"""The direct path of ``POST /v1/runs`` (``runyard.server.fastpath``) answers exactly as
FastAPI's route does: the same statuses and error bodies for good and bad triggers, the
same metrics; and it really is the path a plain trigger takes, while everything it would
refuse is handed to the route."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from runyard import keys
from runyard.server import create_app, fastpath
from runyard.server.fastpath import trigger
from runyard.server.settings import ServerSettings
from runyard.server.state import ServerState
from tests.conftest import make_yard
from tests.server.conftest import Keys, ServerProcess, client, publish_without_worker

#: Bodies (raw bytes, so that broken JSON can be sent) and the status both paths give.
SOME_BAD = b'{"workflow": "greet", "inputs": [{"input": {"name": "a"}}, {"input": 5}]}'
#: Parts of a run that differ between two runs started alike.
OWN = ("id", "created_at", "updated_at", "finished_at")
CASES: list[tuple[str, bytes, int]] = [
    ("async", b'{"workflow": "greet", "input": {"name": "ann"}}', 201),
    (
        "several inputs",
        b'{"workflow": "greet", "inputs": [{"input": {"name": "a"}}, {"input": 5}]}',
        201,
    ),
    ("all inputs bad", b'{"workflow": "greet", "inputs": [{"input": 1}, {"input": 2}]}', 201),
    ("bad input", b'{"workflow": "greet", "input": {"name": ""}}', 422),
    ("unknown workflow", b'{"workflow": "nope", "input": 1}', 404),
    ("wrong type", b'{"workflow": "greet", "input": {"name": "a"}, "priority": "high"}', 422),
    ("unknown field", b'{"workflow": "greet", "input": {"name": "a"}, "colour": 1}', 422),
    ("bad mode", b'{"workflow": "greet", "input": {"name": "a"}, "mode": "sometime"}', 422),
    ("both inputs", b'{"workflow": "greet", "input": 1, "inputs": [1]}', 422),
    ("NUL", b'{"workflow": "greet", "input": {"name": "a\\u0000b"}}', 422),
    ("NaN", b'{"workflow": "greet", "input": NaN}', 422),
    ("huge number", b'{"workflow": "greet", "input": 1e999}', 422),
    ("not JSON", b'{"workflow": "greet", ', 422),
    ("not an object", b"[1, 2]", 422),
    ("not UTF-8", b'{"workflow": "\xff"}', 422),
    ("empty", b"", 422),
    ("unknown task", b'{"workflow": "greet", "input": {"name": "a"}, "task_id": "t-no"}', 422),
    ("bad run id", b'{"workflow": "greet", "input": {"name": "a"}, "run_id": "a b"}', 422),
]


def _post(api: httpx.Client, body: bytes, via_route: bool, **headers: str) -> httpx.Response:
    # A body without Content-Length (chunked) is one of the things that sends a trigger
    # to FastAPI's route (a query string no longer can: an unknown parameter is a 422).
    return api.post(
        "/v1/runs",
        content=iter([body]) if via_route else body,
        headers={"content-type": "application/json", **headers},
    )


def _comparable(r: httpx.Response) -> Any:
    body = r.json()
    if r.status_code < 300:  # a new run each time: compare its shape and its fixed parts
        return {
            k: v
            for k, v in body.items()
            if k not in ("id", "created_at", "updated_at", "finished_at")
        } | {"keys": sorted(body)}
    return body


def test_the_direct_path_answers_as_the_route_does(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        for name, body, status in CASES:
            direct, routed = _post(api, body, False), _post(api, body, True)
            assert direct.status_code == routed.status_code == status, (name, direct.text)
            assert _comparable(direct) == _comparable(routed), name
            assert direct.headers.get("content-type") == routed.headers.get("content-type")
            if status == 201:
                assert direct.headers["location"] == f"/v1/runs/{direct.json()['id']}"

        # An idempotent retry: 200 with the same run, both ways.
        body = b'{"workflow": "greet", "input": {"name": "a"}, "run_id": "fast-1"}'
        first, again, routed = (_post(api, body, v) for v in (False, False, True))
        assert (first.status_code, again.status_code, routed.status_code) == (201, 200, 200)
        assert first.json()["id"] == again.json()["id"] == routed.json()["id"] == "fast-1"

        # Callers: no key 401, a key without write 403, a bearer key 201.
        for key, expected in ((None, 401), (api_keys.read, 403), (api_keys.none, 403)):
            with client(server, key) as other:
                direct = _post(other, CASES[0][1], False)
                routed = _post(other, CASES[0][1], True)
                assert direct.status_code == routed.status_code == expected
                assert direct.json() == routed.json()
                assert direct.headers.get("www-authenticate") == routed.headers.get(
                    "www-authenticate"
                )
        with client(server, None) as bare:
            bearer = {"authorization": f"Bearer {api_keys.write}"}
            assert _post(bare, CASES[0][1], False, **bearer).status_code == 201

        # Over the body limit: 413 either way.
        big = json.dumps({"workflow": "greet", "input": {"name": "x" * 2_000_000}}).encode()
        assert _post(api, big, False).status_code == _post(api, big, True).status_code == 413

        # Counted like any request, under the route's template.
        text = api.get("/metrics").text
        assert 'runyard_http_requests_total{method="POST",route="/v1/runs",status="201"}' in text
        assert 'runyard_runs_created_total{mode="async",workflow="greet"}' in text


def test_a_plain_trigger_takes_the_direct_path_and_a_refusal_the_route(db_url: str) -> None:
    """Called on its own: ``trigger`` answers a plain trigger (the run is written) and
    hands anything it would refuse to the route, with the body it read, writing nothing."""
    asyncio.run(_direct(db_url))


async def _direct(db_url: str) -> None:
    publish_without_worker(db_url)
    key = keys.generate()
    yard = make_yard(db_url)
    app = create_app(yard, settings=ServerSettings(database_url=db_url, api_key=key))
    state = app.state.runyard
    assert isinstance(state, ServerState)
    try:

        async def call(body: bytes, **extra: Any) -> tuple[Any, list[MutableMapping[str, Any]]]:
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/v1/runs",
                "query_string": b"",
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-api-key", key.encode()),
                ],
                **extra,
            }
            sent: list[MutableMapping[str, Any]] = []
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive() -> dict[str, Any]:
                if messages:
                    return messages.pop(0)
                return {"type": "http.disconnect"}

            async def send(message: MutableMapping[str, Any]) -> None:
                sent.append(message)

            rest = await trigger(state, scope, receive, send)
            if rest is not None:  # what the route would read: the same body
                assert await rest() == {"type": "http.request", "body": body, "more_body": False}
            return rest, sent

        rest, sent = await call(b'{"workflow": "greet", "input": {"name": "ann"}, "run_id": "d-1"}')
        assert rest is None and sent[0]["status"] == 201
        assert (await yard.get_run("d-1")).workflow == "greet"

        for body in (
            b'{"workflow": "greet", "input": {"name": "a"}, "priority": "x", "run_id": "d-2"}',
            b'{"workflow": "greet", "input": NaN, "run_id": "d-3"}',
            b"not json",
        ):
            rest, sent = await call(body)
            assert rest is not None and sent == [], body
        rest, sent = await call(b'{"workflow": "greet", "input": 1}', query_string=b"x=1")
        assert rest is not None and sent == []
        page = await yard.list_runs()
        assert [r.id for r in page.items] == ["d-1"]

        # Live triggers (no worker here: each answers 202 past its wait) look up the
        # workflow's flow control where start() does, not with a read of their own.
        lookups: list[str] = []
        real = yard.store.get_workflow

        def counted(tx: Any, name: str, version: str | None = None) -> Any:
            lookups.append(name)
            return real(tx, name, version)

        yard.store.get_workflow = counted  # type: ignore[method-assign]
        live = {"workflow": "greet", "input": {"name": "b"}, "mode": "live", "wait_timeout": 0.05}
        for _ in range(3):
            rest, sent = await call(json.dumps(live).encode())
            assert rest is None and sent[0]["status"] == 202, sent
        assert lookups in ([], ["greet"])  # a second's cache, perhaps filled before
    finally:
        await yard.aclose()


def test_opentelemetry_is_on_only_where_the_environment_configures_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert ServerSettings.from_env().telemetry is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert ServerSettings.from_env().telemetry is True
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert ServerSettings.from_env().telemetry is False


def test_with_telemetry_on_every_trigger_goes_through_the_route(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's telemetry traces what its own routing serves: where it is on, the direct
    path stands aside (and where it is off, the direct path answers)."""
    publish_without_worker(db_url)
    direct: list[str] = []
    real = fastpath.trigger

    async def counted(state: ServerState, scope: Any, receive: Any, send: Any) -> Any:
        direct.append(scope["path"])
        return await real(state, scope, receive, send)

    monkeypatch.setattr(fastpath, "trigger", counted)
    key = keys.generate()
    body = {"workflow": "greet", "input": {"name": "ann"}}

    async def post(telemetry: bool) -> None:
        yard = make_yard(db_url)
        settings = ServerSettings(database_url=db_url, api_key=key, telemetry=telemetry)
        transport = httpx.ASGITransport(app=create_app(yard, settings=settings))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
                r = await api.post("/v1/runs", json=body, headers={"x-api-key": key})
                assert r.status_code == 201, r.text
        finally:
            await yard.aclose()

    for telemetry in (True, False):
        asyncio.run(post(telemetry))
        assert direct == ([] if telemetry else ["/v1/runs"])
