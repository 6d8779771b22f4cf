"""PostgreSQL: while another connection holds a run's row lock past the server's window
(``RUNYARD_SERVER_DB_RETRY_S``), a write that needs that row answers 503 with
``Retry-After`` within the window (it waited for the lock as long as it took), writes
that do not need it go on, and the run is changed once the lock is gone."""

from __future__ import annotations

import functools

import psycopg
import pytest

from tests.server.conftest import (
    ServerFactory,
    assert_unavailable_within,
    client,
    create_keys,
    publish_without_worker,
)


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_locked_run_answers_503_within_the_window(
    db_url: str, server_factory: ServerFactory
) -> None:
    keys = create_keys(db_url)
    publish_without_worker(db_url)
    server = server_factory(RUNYARD_SERVER_DB_RETRY_S="1")
    with client(server, keys.write, timeout=60) as api:
        body = {"workflow": "greet", "input": {"name": "a"}}
        assert api.post("/v1/runs", json={**body, "run_id": "held"}).status_code == 201

        holder = psycopg.connect(db_url)
        holder.execute("SELECT id FROM runs WHERE id = 'held' FOR UPDATE")
        try:
            for action in ("cancel", "pause"):
                assert_unavailable_within(functools.partial(api.post, f"/v1/runs/held/{action}"))
            # What does not need the row goes on.
            assert api.post("/v1/runs", json={**body, "run_id": "other"}).status_code == 201
            assert api.get("/v1/runs/held").json()["status"] == "QUEUED"
        finally:
            holder.rollback()
            holder.close()

        assert api.post("/v1/runs/held/cancel").status_code == 200
        assert api.get("/v1/runs/held").json()["status"] == "CANCELED"
