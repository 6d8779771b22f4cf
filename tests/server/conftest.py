"""A real ``runyard`` HTTP server in a process of its own, on a free loopback port, and
API keys created directly in the store (as ``runyard keys create`` will)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import keys
from runyard.store import open_store
from runyard.store.dbexec import DbExecutor
from tests.apps.e2e_support import spawn
from tests.conftest import ROOT, WorkerProcess
from tests.waiting import NotYet, wait_until

SERVE = """
import asyncio, sys
from runyard.server import create_app, serve
asyncio.run(serve(create_app(), "127.0.0.1", int(sys.argv[1])))
"""
APP = "server_app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """The server as a client sees it: a URL. ``restart`` keeps the port."""

    def __init__(self, db_url: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.db_url = db_url
        self.log = log
        self.env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ServerProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "RUNYARD_DATABASE_URL": self.db_url,
            "RUNYARD_POLL_S": "0.2",
            **self.env,
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVE, str(self.port)],
                env=env,
                stdout=out,
                stderr=out,
                cwd=str(ROOT),
            )
        proc = self.proc

        def answering() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
            httpx.get(self.url + "/healthz", timeout=2)
            return True

        wait_until(
            answering, timeout=timeout, ignoring=(httpx.TransportError,), what="the server up"
        )
        return self

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("server did not stop on SIGTERM") from None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(db_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    """``server_factory(url=None, **env)`` starts a server on the test's database."""
    yield from _servers(db_url, tmp_path)


@pytest.fixture
def pg_server_factory(pg_db_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    """The same, for tests that only make sense on PostgreSQL."""
    yield from _servers(pg_db_url, tmp_path)


def _servers(db_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def make(url: str | None = None, **env: str) -> ServerProcess:
        log = tmp_path / f"server{len(started)}.log"
        server = ServerProcess(url or db_url, log, env).start()
        started.append(server)
        return server

    yield make
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory()


@dataclass(frozen=True, slots=True)
class Keys:
    none: str  # a key with no scope at all
    read: str
    write: str
    admin: str
    ids: dict[str, str]


def create_keys(db_url: str) -> Keys:
    ex = DbExecutor(open_store(db_url))
    made: dict[str, str] = {}
    ids: dict[str, str] = {}
    try:
        for name, scopes in (
            ("none", []),
            ("read", ["read"]),
            ("write", ["read", "write"]),
            ("admin", ["admin"]),
        ):
            key = keys.generate()
            ex.write_sync(
                ex.store.create_api_key_txn, keys.key_id(key), name, keys.digest(key), scopes
            )
            made[name] = key
            ids[name] = keys.key_id(key)
    finally:
        ex.close()
    return Keys(ids=ids, **made)


@pytest.fixture
def api_keys(db_url: str) -> Keys:
    return create_keys(db_url)


def client(server: ServerProcess, key: str | None, timeout: float = 60) -> httpx.Client:
    headers = {"x-api-key": key} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=timeout)


def start_worker(
    procs: list[WorkerProcess], db_url: str, tmp_path: Path, concurrency: int = 4
) -> WorkerProcess:
    return spawn(procs, APP, db_url, tmp_path, concurrency=concurrency)


def publish_without_worker(db_url: str) -> None:
    """Publish the test workflows as a worker would, without starting one (runs then
    stay QUEUED: what list tests want)."""
    from tests.apps.server_app import yard

    ex = DbExecutor(open_store(db_url))
    try:
        ex.write_sync(
            ex.store.register_workflows_txn, [wf.to_record() for wf in yard.workflows.values()]
        )
    finally:
        ex.close()


def assert_unavailable_within(call: Callable[[], httpx.Response], seconds: float = 5) -> None:
    """``call()`` answers 503 (the database unavailable, Retry-After given) within
    ``seconds``."""
    started = time.monotonic()
    r = call()
    took = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert took < seconds, f"answered after {took:.1f} s"
    assert r.json()["error"]["code"] == "store_unavailable"
    assert int(r.headers["retry-after"]) >= 1


def wait_published(api: httpx.Client, *names: str, timeout: float = 30) -> None:
    def published() -> bool | NotYet:
        missing = [n for n in names if api.get(f"/v1/workflows/{n}").status_code != 200]
        return not missing or NotYet({"not published": missing})

    wait_until(published, timeout=timeout, what=f"workflows {list(names)} published")


def wait_status(
    api: httpx.Client, run_id: str, statuses: set[str] | str, timeout: float = 30
) -> dict[str, Any]:
    """Poll ``/status`` until the run is in one of ``statuses``; the run then."""
    wanted = {statuses} if isinstance(statuses, str) else statuses

    def in_wanted() -> dict[str, Any] | NotYet:
        r = api.get(f"/v1/runs/{run_id}/status")
        assert r.status_code in (200, 404), r.text  # 404: not created yet
        body: dict[str, Any] = r.json()
        return body if r.status_code == 200 and body["status"] in wanted else NotYet(body)

    return wait_until(in_wanted, timeout=timeout, what=f"run {run_id} {sorted(wanted)}")
