"""SQLite: while another process holds the database file's write lock past the server's
window (``RUNYARD_SERVER_DB_RETRY_S``), a write answers 503 with ``Retry-After`` within
that window (not after the connection's 30 s busy timeout, and never 500), reads go on
(WAL), nothing refused is written, and writes succeed again once the lock is gone."""

from __future__ import annotations

import functools
import json
import sqlite3

import pytest

from tests.server.conftest import (
    ServerFactory,
    assert_unavailable_within,
    client,
    create_keys,
    publish_without_worker,
)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_locked_file_answers_503_within_the_window(
    db_url: str, server_factory: ServerFactory
) -> None:
    keys = create_keys(db_url)
    publish_without_worker(db_url)
    server = server_factory(RUNYARD_SERVER_DB_RETRY_S="1")
    path = db_url.removeprefix("sqlite:///")
    with client(server, keys.write, timeout=60) as api:
        body = {"workflow": "greet", "input": {"name": "a"}}
        assert api.post("/v1/runs", json={**body, "run_id": "before"}).status_code == 201

        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            # The direct path, and FastAPI's route (a chunked body goes there).
            for suffix, chunked in (("", False), ("route", True)):
                raw = json.dumps({**body, "run_id": f"locked{suffix}"}).encode()
                assert_unavailable_within(
                    functools.partial(
                        api.post,
                        "/v1/runs",
                        content=iter([raw]) if chunked else raw,
                        headers={"content-type": "application/json"},
                    )
                )
            assert_unavailable_within(lambda: api.post("/v1/runs/before/cancel"))
            # Reads do not need the write lock.
            assert api.get("/v1/runs/before").status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        assert api.post("/v1/runs", json={**body, "run_id": "after"}).status_code == 201
        assert api.get("/v1/runs/locked").status_code == 404
        assert api.get("/v1/runs/lockedroute").status_code == 404
        assert api.get("/v1/runs/before").json()["status"] == "QUEUED"
