"""Run lists sort by created_at, started_at, finished_at or status (``sort``, ``order``),
and paging stays exact with each: the cursor holds the whole sort key, and
``page``/``page_size`` walk it. Runs whose time is not set yet sort last ascending,
first descending; ties are broken by creation time, then id."""

from __future__ import annotations

import math
from typing import Any

import httpx

from runyard.store import open_store
from tests.conftest import raw_sql
from tests.server.conftest import Keys, ServerProcess, client, publish_without_worker

SORTS = ("created_at", "started_at", "finished_at", "status")

#: id: (status, started_at, finished_at), times in seconds since the epoch
RUNS: dict[str, tuple[str, float | None, float | None]] = {
    "r0": ("SUCCEEDED", 100.0, 400.0),
    "r1": ("RUNNING", 300.0, None),
    "r2": ("FAILED", 200.0, 250.0),
    "r3": ("QUEUED", None, None),
    "r4": ("RUNNING", 300.0, None),  # the same start as r1: created_at decides
    "r5": ("SUCCEEDED", 50.0, 400.0),  # the same end as r0
    "r6": ("QUEUED", None, None),
    "r7": ("CANCELED", None, 90.0),
}


def expected(sort: str, order: str, created: dict[str, float]) -> list[str]:
    def key(run_id: str) -> tuple[Any, ...]:
        status, started, finished = RUNS[run_id]
        if sort == "created_at":
            return (created[run_id], run_id)
        if sort == "status":
            return (status, created[run_id], run_id)
        at = started if sort == "started_at" else finished
        return (math.inf if at is None else at, created[run_id], run_id)

    return sorted(RUNS, key=key, reverse=order == "desc")


def set_times(db_url: str) -> None:
    """Give each run its status and times, straight in the database (on SQLite through
    the store's own connection, which has the functions its triggers call)."""
    update = "UPDATE runs SET status = %s, started_at = %s, finished_at = %s WHERE id = %s"
    rows = [
        (status, started, finished, run_id) for run_id, (status, started, finished) in RUNS.items()
    ]
    if not db_url.startswith("sqlite"):
        for row in rows:
            raw_sql(db_url, update, row)
        return
    store = open_store(db_url)
    conn = store.connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(update.replace("%s", "?"), rows)
        conn.execute("COMMIT")
    finally:
        store.close_connection(conn)


def page_by_cursor(api: httpx.Client, size: int, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(len(RUNS) + 2):
        r = api.get("/v1/runs", params={**params, "limit": size, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= size
        seen += [run["id"] for run in body["items"]]
        cursor = body["next_cursor"]
        assert r.headers.get("x-pagination-next") == cursor
        if cursor is None:
            return seen
    raise AssertionError(f"paging did not end: {seen}")


def page_by_number(api: httpx.Client, size: int, **params: Any) -> list[str]:
    seen: list[str] = []
    for page in range(1, len(RUNS) + 2):
        r = api.get("/v1/runs", params={**params, "page": page, "page_size": size})
        assert r.status_code == 200, r.text
        items = [run["id"] for run in r.json()["items"]]
        if not items:
            return seen
        seen += items
    raise AssertionError(f"paging did not end: {seen}")


def test_sorted_lists_page_exactly(db_url: str, server: ServerProcess, api_keys: Keys) -> None:
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        for run_id in RUNS:
            r = api.post("/v1/runs", json={"workflow": "counter", "run_id": run_id})
            assert r.status_code == 201, r.text
        set_times(db_url)
        created = {
            str(run_id): float(at)
            for run_id, at in raw_sql(db_url, "SELECT id, created_at FROM runs")
        }

        for sort in SORTS:
            for order in ("asc", "desc"):
                want = expected(sort, order, created)
                r = api.get("/v1/runs", params={"sort": sort, "order": order, "limit": 100})
                assert [run["id"] for run in r.json()["items"]] == want, (sort, order)
                for size in (1, 2, 3):
                    got = page_by_cursor(api, size, sort=sort, order=order)
                    assert got == want, (sort, order, size, got)
                    got = page_by_number(api, size, sort=sort, order=order)
                    assert got == want, (sort, order, size, got)
                # With filters: the same order, only the runs that pass.
                running = [i for i in want if RUNS[i][0] in ("RUNNING", "QUEUED")]
                got = page_by_cursor(api, 2, sort=sort, order=order, status=["running", "queued"])
                assert got == running, (sort, order, got)
                got = page_by_cursor(api, 2, sort=sort, order=order, workflow="counter")
                assert got == want

        # A cursor belongs to its sort and order.
        first = api.get("/v1/runs", params={"sort": "started_at", "limit": 2}).json()
        for params in (
            {"sort": "finished_at"},
            {"sort": "started_at", "order": "asc"},
            {"sort": "created_at"},
        ):
            r = api.get("/v1/runs", params={**params, "cursor": first["next_cursor"]})
            assert r.status_code == 422, r.text
            assert [d["field"] for d in r.json()["error"]["details"]] == ["cursor"]
        plain = api.get("/v1/runs", params={"limit": 2}).json()["next_cursor"]
        r = api.get("/v1/runs", params={"sort": "status", "cursor": plain})
        assert r.status_code == 422 and "cursor" in r.text
        for bad in ("s.", "s.!!!", "s.bm90IGpzb24", "s.WzEsMiwzXQ"):
            r = api.get("/v1/runs", params={"sort": "status", "cursor": bad})
            assert r.status_code == 422, (bad, r.text)
        r = api.get("/v1/runs", params={"sort": "id"})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "sort"
