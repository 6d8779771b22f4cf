"""Listing runs: every filter, and cursor pagination that neither repeats nor skips a
run while new runs are created between pages. (No worker: the runs stay QUEUED.)"""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.conftest import Keys, ServerProcess, client, publish_without_worker


def _all_pages(
    api: httpx.Client, params: dict[str, Any], between: Any = None
) -> list[dict[str, Any]]:
    """Every run the listing yields, following X-Pagination-Next; ``between()`` runs after
    each page."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        r = api.get("/v1/runs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        assert r.headers.get("x-pagination-next") == body["next_cursor"]
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        assert len(body["items"]) == params.get("limit", 20)
        if between is not None:
            between()


def test_filters_and_cursor_pagination(db_url: str, server: ServerProcess, api_keys: Keys) -> None:
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        task = api.post(
            "/v1/tasks", json={"workflow": "greet", "input": {"name": "t"}, "id": "nightly"}
        )
        assert task.status_code == 201, task.text
        created: list[dict[str, Any]] = []
        for i in range(24):
            if i % 6 == 5:
                r = api.post("/v1/tasks/nightly/execute", json={})
            else:
                workflow, input = [("greet", {"name": f"n{i}"}), ("sleeper", 1), ("emitter", 2)][
                    i % 3
                ]
                r = api.post("/v1/runs", json={"workflow": workflow, "input": input})
            assert r.status_code == 201, r.text
            created.append(r.json())
        by_id = {r["id"]: r for r in created}
        canceled = [created[1]["id"], created[7]["id"], created[8]["id"]]
        for run_id in canceled:
            assert api.post(f"/v1/runs/{run_id}/cancel").status_code == 200

        def ids(params: dict[str, Any]) -> list[str]:
            return [r["id"] for r in _all_pages(api, {"limit": 5, **params})]

        newest_first = ids({})
        assert newest_first == [r["id"] for r in reversed(created)]
        assert ids({"order": "asc"}) == [r["id"] for r in created]
        assert sorted(ids({"workflow": "greet"})) == sorted(
            r["id"] for r in created if r["workflow"] == "greet"
        )
        assert sorted(ids({"status": "CANCELED"})) == sorted(canceled)
        assert sorted(ids({"status": ["QUEUED", "CANCELED"]})) == sorted(by_id)
        assert ids({"status": "SUCCEEDED"}) == []
        task_runs = [r["id"] for r in created if r["task_id"] == "nightly"]
        assert len(task_runs) == 4 and sorted(ids({"task_id": "nightly"})) == sorted(task_runs)
        assert len(ids({"mode": "async"})) == 24 and ids({"mode": "live"}) == []
        assert ids({"schedule_id": "none"}) == []
        middle = created[10]["created_at"]
        assert ids({"created_after": middle, "order": "asc"}) == [r["id"] for r in created[10:]]
        assert ids({"created_before": middle, "order": "asc"}) == [r["id"] for r in created[:10]]
        run = api.get(f"/v1/runs/{created[0]['id']}").json()
        assert run["status"] == "QUEUED" and run["mode"] == "async"

        # New runs arrive between pages: newest-first paging still yields each of the
        # runs that existed when it began exactly once (the new ones are ahead of it).
        def insert_two() -> None:
            for _ in range(2):
                assert (
                    api.post("/v1/runs", json={"workflow": "sleeper", "input": 1}).status_code
                    == 201
                )

        paged = [r["id"] for r in _all_pages(api, {"limit": 7}, insert_two)]
        assert len(paged) == len(set(paged)) == 24
        assert paged == newest_first
        # Oldest first, the new runs come at the end, each once, after the old ones.
        before = {r["id"] for r in _all_pages(api, {"limit": 100})}
        paged = [r["id"] for r in _all_pages(api, {"limit": 7, "order": "asc"}, insert_two)]
        assert len(paged) == len(set(paged))
        assert (
            paged[: len(before)]
            == [r["id"] for r in _all_pages(api, {"limit": 100, "order": "asc"})][: len(before)]
        )
        assert before <= set(paged)

        # Bad parameters name themselves.
        refused: list[tuple[dict[str, str | int], str]] = [
            ({"limit": 0}, "limit"),
            ({"limit": 101}, "limit"),
            ({"order": "sideways"}, "order"),
            ({"status": "DONE"}, "status"),
            ({"sort": "id"}, "sort"),
            ({"created_after": "yesterday"}, "created_after"),
            ({"cursor": "not-a-cursor"}, "cursor"),
        ]
        for params, field in refused:
            r = api.get("/v1/runs", params=params)
            assert r.status_code == 422, (params, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid_input"
            assert any(d["field"].startswith(field) for d in error["details"]), error


def test_a_cursor_that_is_not_one_is_refused(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    # A cursor is only ever a next_cursor given back: anything else (a time that is NaN
    # or infinite, no run id, no time) is 422 naming `cursor`, never a page from nowhere.
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        for i in range(3):
            r = api.post("/v1/runs", json={"workflow": "greet", "input": {"name": f"c{i}"}})
            assert r.status_code == 201, r.text
        first = api.get("/v1/runs", params={"limit": 1}).json()
        good = first["next_cursor"]
        at, _, run_id = good.partition("|")
        r = api.get("/v1/runs", params={"limit": 5, "cursor": good})
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        bad = [
            f"nan|{run_id}",
            f"NaN|{run_id}",
            f"inf|{run_id}",
            f"-Infinity|{run_id}",
            f"1e999|{run_id}",
            at,
            f"{at}|",
            f"|{run_id}",
            "garbage",
        ]
        for cursor in bad:
            for order in ("desc", "asc"):
                r = api.get("/v1/runs", params={"cursor": cursor, "order": order})
                assert r.status_code == 422, (cursor, r.text)
                error = r.json()["error"]
                assert error["code"] == "invalid_input"
                assert [d["field"] for d in error["details"]] == ["cursor"], (cursor, error)

        # The outputs' cursor (an output id) is checked as strictly.
        run = first["items"][0]["id"]
        for cursor in ("nan", "inf", "-1", "1.5", "1e3", "x"):
            r = api.get(f"/v1/runs/{run}/outputs", params={"cursor": cursor})
            assert r.status_code == 422, (cursor, r.text)
            assert [d["field"] for d in r.json()["error"]["details"]] == ["cursor"], r.text

        # So is the event stream's: Last-Event-ID, the id of an output event ("²" passes
        # str.isdigit but not int()).
        for value in ("²".encode("latin-1"), b"abc", b"-1", b"1.5"):
            # (streamed: were it accepted, the stream of a queued run would not end)
            with api.stream(
                "GET", f"/v1/runs/{run}/events", headers={b"last-event-id": value}
            ) as r:
                assert r.status_code == 422, value
                r.read()
            assert [d["field"] for d in r.json()["error"]["details"]] == ["last-event-id"]
