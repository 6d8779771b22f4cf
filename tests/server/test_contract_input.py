"""The HTTP contract for what a client sends (issue 18): unknown query parameters are
refused, run lists page by ``page``/``page_size`` too, statuses in any case, one 422
names every bad field, malformed JSON says where, a body without a Content-Type is read
as JSON and one of another type is refused (415), JSON nested too deep is refused
(422 naming the limit) on every route and in process, and nothing stored is too deep to
be read back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from runyard import InvalidInput, Runyard
from runyard.rules import JSON_DEPTH_MAX
from runyard.schemas import PAYLOAD_DOC as PAYLOAD
from tests.server.conftest import Keys, ServerProcess, client, publish_without_worker


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def raw_nested(depth: int) -> bytes:
    return b"[" * depth + b"0" + b"]" * depth


def error_of(r: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def fields(error: dict[str, Any]) -> list[str]:
    return [d["field"] for d in error["details"]]


def post_raw(api: httpx.Client, path: str, body: bytes, chunked: bool = False) -> httpx.Response:
    # Chunked (no Content-Length): FastAPI's route rather than the direct path of
    # POST /v1/runs; both must answer alike.
    return api.post(
        path,
        content=iter([body]) if chunked else body,
        headers={"content-type": "application/json"},
    )


def test_unknown_query_parameters_pages_and_status_case(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        for i in range(5):
            r = api.post("/v1/runs", json={"workflow": "counter", "run_id": f"r{i}"})
            assert r.status_code == 201, r.text

        # ?page=2&page_size=10 is no longer page 1 forever: it is a page.
        error = error_of(api.get("/v1/runs", params={"pagee": 2, "limit": "x", "sort": "id"}))
        assert set(fields(error)) == {"pagee", "limit", "sort"}  # one 422, all of them
        unknown = next(d for d in error["details"] if d["field"] == "pagee")
        assert unknown["in"] == "query" and "page_size" in unknown["error"]
        assert fields(error_of(api.post("/v1/runs/r0/cancel", params={"force": 1}))) == ["force"]
        assert api.get("/v1/runs/r0/cancel").status_code == 405  # (a GET, for the record)

        def ids(**params: Any) -> list[str]:
            r = api.get("/v1/runs", params=params)
            assert r.status_code == 200, r.text
            return [run["id"] for run in r.json()["items"]]

        assert ids(page=1, page_size=2) == ["r4", "r3"]
        assert ids(page=2, page_size=2) == ["r2", "r1"]
        assert ids(page=3, page_size=2) == ["r0"]
        assert ids(page=4, page_size=2) == []
        assert ids(page=2, page_size=2, order="asc") == ["r2", "r3"]
        assert ids(page=2, limit=3) == ["r1", "r0"]  # page_size defaults to limit
        r = api.get("/v1/runs", params={"page": 1, "page_size": 2})
        assert r.json()["next_cursor"] == r.headers["x-pagination-next"]
        assert ids(cursor=r.json()["next_cursor"], limit=2) == ["r2", "r1"]
        assert fields(error_of(api.get("/v1/runs", params={"page": 2, "cursor": "x"}))) == ["page"]
        assert fields(error_of(api.get("/v1/runs", params={"page_size": 2}))) == ["page_size"]
        assert fields(error_of(api.get("/v1/runs", params={"page": 0}))) == ["page"]
        assert fields(error_of(api.get("/v1/runs", params={"page": 102, "page_size": 100}))) == [
            "page"
        ]

        # Statuses in any case, as the CLI takes them.
        assert ids(status="queued", limit=10) == ["r4", "r3", "r2", "r1", "r0"]
        assert ids(status=["Queued", "SUCCEEDED"], limit=1) == ["r4"]
        assert ids(status="succeeded") == []
        assert fields(error_of(api.get("/v1/runs", params={"status": "done"}))) == ["status[0]"]


def test_one_422_for_every_bad_field_and_clear_body_errors(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        for chunked in (False, True):
            # Fields the model refuses and text that cannot be stored: one answer.
            body = b'{"workflow": "", "mode": "now", "input": {"a": "x\\u0000", "b": NaN}}'
            error = error_of(post_raw(api, "/v1/runs", body, chunked))
            assert set(fields(error)) == {"workflow", "mode", "input.a", "input.b"}
            assert all(f in error["message"] for f in ("workflow", "mode", "input.a"))

            # The rules between fields come in the same answer as the fields' own.
            body = (
                b'{"workflow": "counter", "priority": 99999999, "input": 1, "custom_data": 2,'
                b' "inputs": [{"input": 3}]}'
            )
            error = error_of(post_raw(api, "/v1/runs", body, chunked))
            assert set(fields(error)) == {"priority", "inputs", "custom_data"}, error
            assert "input or inputs, not both" in error["message"]
            body = b'{"workflow": "counter", "input": 1, "inputs": [{"input": 3}]}'
            error = error_of(post_raw(api, "/v1/runs", body, chunked))
            assert set(fields(error)) == {"inputs"}, error

            # Malformed JSON: where, in lines and columns.
            error = error_of(post_raw(api, "/v1/runs", b'{"workflow": "counter",\n "input": }'))
            assert error["message"] == (
                "the body is not valid JSON: Expecting value at line 2, column 11"
            )
            assert error["details"] == [
                {
                    "field": "body",
                    "in": "body",
                    "error": "malformed JSON: Expecting value",
                    "type": "json_invalid",
                    "line": 2,
                    "column": 11,
                }
            ]
            # A 5,000-digit integer: a documented 422, not a 400.
            error = error_of(
                post_raw(api, "/v1/runs", b'{"workflow": "x", "input": ' + b"7" * 5000 + b"}")
            )
            assert "more than 4300 digits" in error["message"]

        # No Content-Type: read as JSON. Another type: 415 saying which header to send.
        r = api.post("/v1/runs", content=b'{"workflow": "counter", "run_id": "no-type"}')
        assert r.status_code == 201, r.text
        for media in ("text/plain", "application/x-www-form-urlencoded"):
            r = api.post(
                "/v1/runs",
                content=b'{"workflow": "counter", "run_id": "typed"}',
                headers={"content-type": media},
            )
            error = error_of(r, 415)
            assert error["code"] == "unsupported_media_type"
            assert "Content-Type: application/json" in error["message"]
        assert api.get("/v1/runs/typed").status_code == 404
        r = api.post(
            "/v1/runs",
            content=b'{"workflow": "counter", "run_id": "plus-json"}',
            headers={"content-type": "application/vnd.api+json; charset=utf-8"},
        )
        assert r.status_code == 201, r.text

        # Error messages are plain text (the 401 carried reStructuredText backticks).
        with client(server, None) as anonymous:
            error = error_of(anonymous.get("/v1/runs"), 401)
        assert "`" not in error["message"] and "x-api-key" in error["message"]


def test_json_too_deep_is_refused_naming_the_limit(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    limit = str(JSON_DEPTH_MAX)
    with client(server, api_keys.write) as api:
        # About a thousand deep: 422 (was a 500 from an uncaught RecursionError).
        deep = raw_nested(1000)
        for path, body in (
            ("/v1/runs", b'{"workflow": "counter", "input": ' + deep + b"}"),
            ("/v1/tasks", b'{"workflow": "counter", "input": ' + deep + b"}"),
            ("/v1/events/e1", b'{"data": ' + deep + b"}"),
        ):
            for chunked in (False, True):
                error = error_of(post_raw(api, path, body, chunked))
                assert limit in error["message"], error
                assert error["details"][0]["max_depth"] == JSON_DEPTH_MAX

        # Just past the limit, and at depths that were stored and could not be served.
        for depth in (JSON_DEPTH_MAX + 1, 256, 600):
            payloads: list[tuple[str, dict[str, Any]]] = [
                ("/v1/runs", {"workflow": "counter", "input": nested(depth), "run_id": "deep"}),
                ("/v1/runs", {"workflow": "counter", "inputs": [{"input": nested(depth)}]}),
                ("/v1/runs", {"workflow": "counter", "input": 1, "custom_data": nested(depth)}),
                ("/v1/tasks", {"workflow": "counter", "input": nested(depth), "id": "deep"}),
                ("/v1/events/e1", {"data": nested(depth)}),
            ]
            for path, payload in payloads:
                error = error_of(api.post(path, json=payload))
                assert limit in error["message"], (path, depth, error)
                named = fields(error)[0]
                assert named in {
                    "input",
                    "inputs",
                    "inputs[0]",
                    "custom_data",
                    "input.custom_data",
                    "data",
                }, named
        r = api.patch("/v1/tasks/none", json={"input": nested(JSON_DEPTH_MAX + 1)})
        assert r.status_code in (404, 422), r.text

        # At the limit: stored, and everything that shows it answers.
        at_limit = nested(JSON_DEPTH_MAX)
        r = api.post("/v1/runs", json={"workflow": "counter", "input": at_limit, "run_id": "ok"})
        assert r.status_code == 201, r.text
        assert api.get("/v1/runs/ok").json()["input"] == at_limit
        assert api.get("/v1/runs/ok/inputs").json()["items"][0]["input"] == at_limit
        r = api.post("/v1/tasks", json={"workflow": "counter", "input": at_limit, "id": "t"})
        assert r.status_code == 201, r.text
        assert api.get("/v1/tasks").json()["items"][0]["input"] == at_limit
        assert api.post("/v1/events/e2", json={"data": at_limit}).status_code == 200
        # Nothing deeper was stored.
        assert api.get("/v1/runs/deep").status_code == 404
        assert api.get("/v1/tasks/deep").status_code == 404
        assert [run["id"] for run in api.get("/v1/runs").json()["items"]] == ["ok"]
    assert "Traceback" not in server.logs() and "RecursionError" not in server.logs()


def test_the_service_refuses_json_too_deep_in_process(yard: Runyard) -> None:
    @yard.workflow
    async def anything(ctx: Any, value: Any = None) -> Any:
        return value

    async def refused(call: Any) -> InvalidInput:
        with pytest.raises(InvalidInput) as info:
            await call
        return info.value

    async def main() -> None:
        too_deep = nested(JSON_DEPTH_MAX + 1)
        for call, field in (
            (yard.start("anything", too_deep), "input"),
            (yard.start("anything", nested(5000)), "input"),
            (yard.start("anything", 1, custom_data=too_deep), "input.custom_data"),
            (yard.start("anything", inputs=[1, too_deep]), "inputs[1]"),
            (yard.service.notify("ev", too_deep), "data"),
        ):
            error = await refused(call)
            assert error.details[0]["field"] == field, error.details
            assert error.details[0]["max_depth"] == JSON_DEPTH_MAX
        assert (await yard.list_runs(limit=10)).items == []
        handle = await yard.start("anything", nested(JSON_DEPTH_MAX))
        assert (await yard.service.get_run(handle.id)).id == handle.id

    asyncio.run(main())


def test_answers_match_the_openapi_document(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        doc = api.get("/openapi.json").json()
        # 405 lists every method the path answers.
        r = api.delete("/v1/runs")
        assert error_of(r, 405)["code"] == "method_not_allowed"
        assert r.headers["allow"] == "GET, POST"
        r = api.put("/v1/tasks/t1")
        assert r.headers["allow"] == "DELETE, GET, PATCH"

        # POST on an event's waiters list is not a notify of "<id>/waiters".
        r = api.post("/v1/events/0/waiters")
        assert error_of(r, 405) and r.headers["allow"] == "GET"
        assert api.get("/v1/events/0/waiters").status_code == 200

        # Percent-encoded bytes that are not UTF-8 are refused, not stored as U+FFFD.
        assert fields(error_of(api.post("/v1/events/%ff"))) == ["path"]
        assert fields(error_of(api.get("/v1/runs?workflow=%ff"))) == ["query"]
        r = api.post("/v1/events/%C3%A9t%C3%A9")
        assert r.status_code == 200 and r.json()["event_id"] == "été"

        # A time query is ISO 8601, as the document says (format: date-time).
        param = next(
            p
            for p in doc["paths"]["/v1/runs"]["get"]["parameters"]
            if p["name"] == "created_before"
        )
        assert "date-time" in json.dumps(param["schema"])
        for bad in ("0.5", "1700000000", "-3"):
            assert fields(error_of(api.get("/v1/runs", params={"created_before": bad}))) == [
                "created_before"
            ]
        assert (
            api.get("/v1/runs", params={"created_before": "2030-01-01T00:00:00Z"}).status_code
            == 200
        )

        # A 5,000-digit integer in a query: 422 as documented, never 400.
        assert error_of(api.get("/v1/runs", params={"limit": "9" * 5000}))

        # The 422 rules are stated in the document: bounds and patterns where JSON schema
        # has them, descriptions where it has not.
        schemas = doc["components"]["schemas"]
        run_create = schemas["RunCreate"]["properties"]
        assert f"at most {JSON_DEPTH_MAX} levels" in run_create["input"]["description"]
        assert "not with `inputs`" in run_create["input"]["description"]
        assert f"at most {JSON_DEPTH_MAX} levels" in run_create["custom_data"]["description"]
        assert "not with `input`" in run_create["inputs"]["description"]
        assert "same workflow" in run_create["task_id"]["description"]
        assert "9999" in run_create["not_before"]["description"]
        assert json.dumps(run_create["max_results"]).count("2147483647") == 1
        for name in ("NotifyIn", "TaskIn", "TaskPatch", "InputIn", "ForkIn", "TaskExecute"):
            assert PAYLOAD in json.dumps(schemas[name]), name
        notify = doc["paths"]["/v1/events/{event_id}"]["post"]["parameters"]
        assert next(p for p in notify if p["name"] == "event_id")["schema"]["pattern"]
        stream = doc["paths"]["/v1/runs/{run_id}/events"]["get"]["parameters"]
        header = next(p for p in stream if p["name"] == "last-event-id")
        assert "pattern" in json.dumps(header["schema"])
        assert fields(error_of(api.post("/v1/events/a%01b"))) == ["event_id"]

        # Every status answered above is in the document for its operation.
        ops = doc["paths"]
        assert {"405"} - set(ops["/v1/runs"]["get"]["responses"]) == {
            "405"
        }  # (405: not listed, by HTTP)
        for code in ("413", "415", "422", "503", "507"):
            assert code in ops["/v1/runs"]["post"]["responses"], code
        assert "Retry-After" in ops["/v1/runs"]["post"]["responses"]["507"]["headers"]


def test_docs_are_served_from_the_package(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as web:
        r = web.get("/", follow_redirects=False)
        assert r.status_code in (302, 307) and r.headers["location"] == "/docs"
        page = web.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "cdn." not in page.text and "https://" not in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
            assert f"/docs/assets/{asset}" in page.text
            r = web.get(f"/docs/assets/{asset}")
            assert r.status_code == 200 and len(r.content) > 500, asset
        assert "SwaggerUIBundle" in web.get("/docs/assets/swagger-ui-bundle.js").text
        assert web.get("/openapi.json").status_code == 200
