"""One error shape for every failure, 422 naming each bad field, 413 over the body limit
(announced or streamed), and nothing written when a request is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.server.conftest import Keys, ServerFactory, client, publish_without_worker


def test_error_shape_and_bad_input(
    db_url: str, server_factory: ServerFactory, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    server = server_factory(RUNYARD_MAX_BODY_BYTES="4000")
    with client(server, api_keys.write) as api:
        r = api.get("/v1/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = api.put("/v1/runs", json={})
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert "POST" in r.headers["allow"]

        def refused(
            body: object | None = None, content: bytes | None = None, **kw: object
        ) -> dict[str, Any]:
            if content is not None:
                r = api.post(
                    "/v1/runs", content=content, headers={"content-type": "application/json"}
                )
            else:
                r = api.post("/v1/runs", json=body)
            assert r.status_code == 422, r.text
            error: dict[str, Any] = r.json()["error"]
            assert set(error) == {"code", "message", "details"}
            assert error["code"] == "invalid_input"
            return error

        def fields(error: dict[str, Any]) -> list[str]:
            return [d["field"] for d in error["details"]]

        # (a trigger names a workflow or a url, an HTTP target: neither names both)
        assert fields(refused({})) == ["workflow", "url"]
        assert set(fields(refused({"workflow": "", "limit": 3, "mode": "now"}))) == {
            "workflow",
            "limit",
            "mode",
        }
        assert fields(refused({"workflow": "greet", "input": {"name": 5}, "run_id": "r-1"})) == [
            "input.name"
        ]
        assert fields(refused({"workflow": "greet", "run_id": "bad id!"})) == ["run_id"]
        assert fields(refused({"workflow": "greet", "flow_control": {"key": "k", "rate": 0}})) == [
            "flow_control.rate"
        ]
        assert fields(refused({"workflow": "greet", "max_results": 2**40})) == ["max_results"]
        assert fields(refused({"workflow": "greet", "input": {"name": "a\u0000b"}})) == [
            "input.name"
        ]
        assert fields(
            refused({"workflow": "greet", "not_before": "9999-12-31T23:00:00-05:00"})
        ) == ["not_before"]
        refused(content=b'{"workflow": "greet", "input": {"name": NaN}}')
        assert fields(refused(content=b'{"workflow": "greet", "timeout": 1e999}')) == ["timeout"]
        refused(content=b'{"workflow": "greet", "input": {"name": "\\ud800"}}')
        assert refused(content=b'{"workflow": ')["details"][0]["type"] == "json_invalid"
        refused(content=b'{"workflow": "greet", "input": {"name": "\xff"}}')
        r = api.post("/v1/runs", json={"workflow": "nope", "input": 1})
        assert r.status_code == 404 and r.json()["error"]["code"] == "workflow_not_found"
        assert api.get("/v1/runs/not a run id").status_code == 404
        assert api.get("/v1/runs", params={"workflow": "a\x00b"}).status_code == 422

        # Over the body limit: refused whether the length is announced or streamed.
        big = {"workflow": "greet", "input": {"name": "x" * 5000}, "run_id": "too-big-1"}
        r = api.post("/v1/runs", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:
            yield b'{"workflow": "greet", "run_id": "too-big-2", "input": {"name": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}}'

        with client(server, api_keys.write) as streaming:
            r = streaming.post(
                "/v1/runs", content=chunks(), headers={"content-type": "application/json"}
            )
        assert r.status_code == 413, r.text
        for run_id in ("r-1", "too-big-1", "too-big-2"):
            assert api.get(f"/v1/runs/{run_id}").status_code == 404  # nothing written
        assert api.get("/v1/runs").json()["items"] == []

        # Several inputs: one bad input is discarded with its error, the others run.
        r = api.post(
            "/v1/runs",
            json={"workflow": "greet", "inputs": [{"input": {"name": "a"}}, {"input": {}}]},
        )
        assert r.status_code == 201, r.text
        inputs = api.get(f"/v1/runs/{r.json()['id']}/inputs").json()["items"]
        assert [i["state"] for i in inputs] == ["queued", "discarded"]
        assert inputs[1]["error"]["code"] == "invalid_input"
        queue = api.get(f"/v1/runs/{r.json()['id']}/queue").json()
        assert [i["index"] for i in queue["items"]] == [0]
        history = api.get(
            f"/v1/runs/{r.json()['id']}/queue", params={"include_history": True}
        ).json()
        assert [i["state"] for i in history["items"]] == ["queued", "discarded"]


def test_durations_and_times_must_be_finite_numbers(
    db_url: str, server_factory: ServerFactory, api_keys: Keys
) -> None:
    # Python's json reads NaN and Infinity (JSON has neither) and 1e999 as infinity:
    # each is 422 naming its field, on the direct path of POST /v1/runs and its route.
    publish_without_worker(db_url)
    server = server_factory()
    with client(server, api_keys.write) as api:
        for field, raw in [
            ("delay", b'"delay": NaN'),
            ("delay", b'"delay": Infinity'),
            ("timeout", b'"timeout": Infinity'),
            ("timeout", b'"timeout": -Infinity'),
            ("timeout", b'"timeout": 1e999'),
            ("wait_timeout", b'"mode": "live", "wait_timeout": NaN'),
            ("not_before", b'"not_before": NaN'),
            ("flow_control.period", b'"flow_control": {"key": "k", "rate": 1, "period": Infinity}'),
        ]:
            body = b'{"workflow": "greet", "input": {"name": "a"}, "run_id": "nan-1", ' + raw + b"}"
            # Chunked (no Content-Length): the route's answer, not the direct path's.
            for content in (body, iter([body])):
                r = api.post(
                    "/v1/runs",
                    content=content,
                    headers={"content-type": "application/json"},
                )
                assert r.status_code == 422, (raw, r.text)
                error = r.json()["error"]
                assert [d["field"] for d in error["details"]] == [field], (raw, error)
                assert error["details"][0]["error"] == "not a finite number"
                assert field in error["message"]
        assert api.get("/v1/runs/nan-1").status_code == 404  # nothing written

        # The same in a task's options, its update and its execution, and a fork.
        r = api.post("/v1/tasks", json={"workflow": "greet", "id": "t1", "input": {"name": "a"}})
        assert r.status_code == 201, r.text
        for method, path, raw, field in [
            (
                "POST",
                "/v1/tasks",
                b'{"workflow": "greet", "options": {"timeout": NaN}}',
                "options.timeout",
            ),
            ("PATCH", "/v1/tasks/t1", b'{"options": {"timeout": Infinity}}', "options.timeout"),
            ("POST", "/v1/tasks/t1/execute", b'{"timeout": NaN}', "timeout"),
            ("POST", "/v1/tasks/t1/execute", b'{"wait_timeout": Infinity}', "wait_timeout"),
            ("POST", "/v1/runs/x/fork", b'{"from_step": NaN}', "from_step"),
        ]:
            r = api.request(method, path, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 422, (path, raw, r.text)
            assert [d["field"] for d in r.json()["error"]["details"]] == [field], r.text
        assert api.get("/v1/tasks/t1").json()["options"] == {}
        assert api.get("/v1/runs").json()["items"] == []

        # A long-poll's timeout in the query.
        run = api.post("/v1/runs", json={"workflow": "greet", "input": {"name": "a"}}).json()
        for value in ("nan", "inf", "-inf"):
            r = api.get(f"/v1/runs/{run['id']}/result", params={"timeout": value})
            assert r.status_code == 422, (value, r.text)
            assert [d["field"] for d in r.json()["error"]["details"]] == ["timeout"], r.text


def test_a_task_id_must_name_a_task_of_the_run_s_workflow(
    db_url: str, server_factory: ServerFactory, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    server = server_factory()
    with client(server, api_keys.write) as api:
        r = api.post("/v1/tasks", json={"workflow": "sleeper", "id": "t-sleep", "input": 1})
        assert r.status_code == 201, r.text
        for task_id, error in (("t-sleep", "a task of another workflow"), ("t-no", "unknown task")):
            body = {
                "workflow": "greet",
                "input": {"name": "a"},
                "task_id": task_id,
                "run_id": "t-1",
            }
            for content in (json.dumps(body).encode(), iter([json.dumps(body).encode()])):
                r = api.post("/v1/runs", content=content)
                assert r.status_code == 422, r.text
                assert r.json()["error"]["details"] == [{"field": "task_id", "error": error}]
        assert api.get("/v1/runs/t-1").status_code == 404  # nothing written
        r = api.post("/v1/runs", json={"workflow": "sleeper", "input": 0, "task_id": "t-sleep"})
        assert r.status_code == 201 and r.json()["task_id"] == "t-sleep"
