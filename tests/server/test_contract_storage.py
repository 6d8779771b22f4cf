"""Storage trouble as a client sees it (issue 18): a full SQLite disk answers 507 with
``Retry-After`` on every write while reads go on, and writes resume once space is freed
(a real full disk: a small tmpfs); a database outage answers 503 whose body carries no
driver text, and a write's 503 says its outcome is unknown and how to check it."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psycopg
import pytest

from runyard.store import open_store
from tests.server.conftest import ServerFactory, client, create_keys, publish_without_worker
from tests.server.test_unavailable import Proxy
from tests.waiting import wait_until

#: What a driver's error says that a client must not see.
DRIVER_TEXT = ("127.0.0.1", "localhost", "5432", "Is the server running", "psycopg", "sqlite")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of the test's own (unmounted afterwards)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the file that does it."""
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 65536)
    return filler


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_full_disk_answers_507_with_retry_after_and_recovers(
    small_disk: Path, server_factory: ServerFactory
) -> None:
    url = f"sqlite:///{small_disk / 'runyard.db'}"
    open_store(url).upgrade()
    keys = create_keys(url)
    publish_without_worker(url)
    server = server_factory(url, RUNYARD_SERVER_DB_RETRY_S="2")
    with client(server, keys.write, timeout=30) as api:
        body = {"workflow": "greet", "input": {"name": "a"}}
        assert api.post("/v1/runs", json={**body, "run_id": "before"}).status_code == 201
        filler = fill(small_disk)
        try:
            big = {"name": "x" * 50_000}
            for method, path, payload in (
                ("POST", "/v1/runs", {**body, "input": big, "run_id": "full-1"}),
                ("POST", "/v1/runs", {"workflow": "greet", "inputs": [{"input": big}] * 20}),
                ("POST", "/v1/runs/before/cancel", None),
                ("POST", "/v1/tasks", {"workflow": "greet", "id": "t1", "input": big}),
                ("POST", "/v1/events/e1", {"data": big}),
            ):
                r = api.request(method, path, json=payload)
                error = error_of(r, 507)
                assert error["code"] == "storage_full", path
                assert "disk is full" in error["message"]
                assert int(r.headers["retry-after"]) >= 1
                assert not any(text in error["message"] for text in DRIVER_TEXT)
            # Reads go on, and nothing was half-written.
            assert api.get("/v1/runs/before").json()["status"] == "QUEUED"
            assert [run["id"] for run in api.get("/v1/runs").json()["items"]] == ["before"]
            assert api.get("/v1/runs/full-1").status_code == 404
        finally:
            filler.unlink()
        # Space is back: writes succeed again, with nothing to restart.
        assert api.post("/v1/runs", json={**body, "run_id": "after"}).status_code == 201
        assert api.post("/v1/runs/before/cancel").json()["status"] == "CANCELED"
        assert api.post("/v1/tasks", json={"workflow": "greet", "id": "t1"}).status_code == 201
    assert "Traceback" not in server.logs()


@pytest.fixture
def proxy(pg_db_url: str) -> Iterator[Proxy]:
    parsed = urlparse(pg_db_url)
    p = Proxy((parsed.hostname or "127.0.0.1", parsed.port or 5432))
    p.open()
    yield p
    p.cut()


def test_503_bodies_carry_no_driver_text_and_say_a_write_s_outcome_is_unknown(
    pg_db_url: str, proxy: Proxy, pg_server_factory: ServerFactory
) -> None:
    keys = create_keys(pg_db_url)
    publish_without_worker(pg_db_url)
    parsed = urlparse(pg_db_url)
    via_proxy = parsed._replace(netloc=f"{parsed.username}@127.0.0.1:{proxy.port}").geturl()
    server = pg_server_factory(
        via_proxy, RUNYARD_SERVER_DB_RETRY_S="1", RUNYARD_API_KEY="server-key-1"
    )
    start = {"workflow": "greet", "input": {"name": "a"}, "run_id": "maybe-1"}
    # The server's own key is checked without the database: requests made with it reach
    # their work; a stored key's check needs the database first.
    with client(server, "server-key-1", timeout=30) as api, client(server, keys.write) as stored:
        assert api.post("/v1/runs", json={**start, "run_id": "known"}).status_code == 201
        assert stored.get("/v1/runs/known").status_code == 200
        proxy.cut()

        def unavailable(r: httpx.Response) -> dict[str, Any]:
            error = error_of(r, 503)
            assert error["code"] == "store_unavailable"
            assert int(r.headers["retry-after"]) >= 1
            text = r.text
            assert str(proxy.port) not in text
            assert not any(driver in text for driver in DRIVER_TEXT), text
            return error

        error = unavailable(api.get("/v1/runs"))
        assert error["message"].startswith("the database is unavailable right now")
        assert error["details"] is None

        # Refused while the key was checked: nothing was done, and the answer says so.
        error = unavailable(stored.post("/v1/runs", json=start))
        assert error["details"] == {"outcome": "not_applied"}
        assert "nothing was done" in error["message"]

        # A start with a run id: unknown outcome, and how to check it.
        raw = json.dumps(start).encode()
        for content in (raw, iter([raw])):  # chunked: FastAPI's route, not the direct path
            r = api.post("/v1/runs", content=content, headers={"content-type": "application/json"})
            error = unavailable(r)
            assert error["details"] == {
                "outcome": "unknown",
                "run_id": "maybe-1",
                "check": "/v1/runs/maybe-1",
            }
            assert "GET /v1/runs/maybe-1" in error["message"]
        # Without one: unknown, and the advice to give one.
        error = unavailable(api.post("/v1/runs", json={**start, "run_id": None}))
        assert error["details"] == {"outcome": "unknown"}
        assert "Give a run_id" in error["message"]
        # Any other write: unknown too.
        error = unavailable(api.post("/v1/runs/known/cancel"))
        assert error["details"] == {"outcome": "unknown"} and "unknown" in error["message"]

        proxy.open()
        wait_until(
            lambda: api.get("/v1/runs").status_code == 200,
            timeout=20,
            interval=0.1,
            what="the database back",
        )
        # The check the answer named, then the retry it said was safe.
        assert api.get("/v1/runs/maybe-1").status_code == 404
        assert api.post("/v1/runs", json=start).status_code == 201
        assert api.post("/v1/runs", json=start).status_code == 200  # not started twice


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_write_that_waits_past_the_window_says_its_outcome_is_unknown(
    db_url: str, server_factory: ServerFactory
) -> None:
    """The write reaches the database and waits there (a table lock) past the server's
    window: 503, the run id named with the way to check; once the lock is gone, the
    check and the retry answer."""
    keys = create_keys(db_url)
    publish_without_worker(db_url)
    server = server_factory(RUNYARD_SERVER_DB_RETRY_S="1")
    start = {"workflow": "greet", "input": {"name": "a"}, "run_id": "held-1"}
    with client(server, keys.write, timeout=60) as api:
        assert api.get("/v1/runs").status_code == 200
        r = api.post("/v1/tasks", json={"workflow": "greet", "id": "t1", "input": {"name": "b"}})
        assert r.status_code == 201, r.text
        holder = psycopg.connect(db_url)
        try:
            holder.execute("LOCK TABLE runs IN SHARE MODE")  # reads go on, inserts wait
            r = api.post("/v1/runs", json=start)
            error = error_of(r, 503)
            assert error["details"] == {
                "outcome": "unknown",
                "run_id": "held-1",
                "check": "/v1/runs/held-1",
            }
            assert not any(driver in r.text for driver in DRIVER_TEXT), r.text
            assert api.get("/v1/runs/held-1").status_code == 404  # (a read goes on)
            # The same for a run started from a task.
            r = api.post("/v1/tasks/t1/execute", json={"run_id": "held-2"})
            assert error_of(r, 503)["details"] == {
                "outcome": "unknown",
                "run_id": "held-2",
                "check": "/v1/runs/held-2",
            }
        finally:
            holder.rollback()
            holder.close()
        r = api.post("/v1/runs", json=start)
        assert r.status_code in (200, 201), r.text
        assert api.get("/v1/runs/held-1").json()["id"] == "held-1"
        assert api.get("/v1/runs/held-2").status_code == 404
        assert api.post("/v1/tasks/t1/execute", json={"run_id": "held-2"}).status_code == 201
