"""HTTP-target runs end to end: a real ``runyard server`` and a real worker process (both
with ``RUNYARD_OUTBOUND_ALLOW=127.0.0.0/8``) per backend, and a loopback target HTTP
server in this process whose answers each test chooses by path."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from runyard import keys
from tests.client.support import Served, ServerProcess, wait_published
from tests.conftest import BACKENDS, WorkerProcess, fresh_database
from tests.waiting import NotYet, wait_until

ALLOW = {"RUNYARD_OUTBOUND_ALLOW": "127.0.0.0/8"}


@dataclass
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Target:
    """The loopback target: what it was sent, and how many requests were in flight at
    once per path prefix at most."""

    url: str
    hits: list[Hit] = field(default_factory=list)
    inflight: dict[str, int] = field(default_factory=dict)
    most: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path.split("?")[0] == path]


def _answer(target: Target, handler: BaseHTTPRequestHandler, hit: Hit) -> None:
    """``/ok/*``: 200 JSON echo; ``/text/*``: 200 text; ``/flaky/N/*``: 503 for the first N
    requests, then 200; ``/limited/*``: 429 (Retry-After: 1) once, then 200; ``/bad/*``:
    404; ``/down/*``: 500 with a JSON body; ``/slow/*``: 200 after 0.3 s."""
    parts = hit.path.split("?")[0].strip("/").split("/")
    kind = parts[0]
    seen = len(target.of(hit.path.split("?")[0]))
    status, headers, body = 200, {"content-type": "application/json"}, b""
    if kind == "ok":
        echo = {"method": hit.method, "body": hit.body.decode(), "x": hit.headers.get("x-test")}
        body = json.dumps({"echo": echo}).encode()
    elif kind == "text":
        headers, body = {"content-type": "text/plain"}, b"plain words"
    elif kind == "flaky":
        status = 503 if seen <= int(parts[1]) else 200
        body = json.dumps({"attempt": seen}).encode()
    elif kind == "limited":
        if seen == 1:
            status, headers = 429, {"retry-after": "1", "content-type": "text/plain"}
        body = b"{}"
    elif kind == "bad":
        status, body = 404, json.dumps({"error": "no such thing"}).encode()
    elif kind == "down":
        status, body = 500, json.dumps({"down": seen}).encode()
    elif kind == "slow":
        key = "/".join(parts[:2])
        with target.lock:
            target.inflight[key] = target.inflight.get(key, 0) + 1
            target.most[key] = max(target.most.get(key, 0), target.inflight[key])
        time.sleep(0.3)
        with target.lock:
            target.inflight[key] -= 1
        body = b"{}"
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture(scope="package")
def target() -> Iterator[Target]:
    box: list[Target] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            hit = Hit(
                self.path,
                self.command,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
                time.monotonic(),
            )
            with box[0].lock:
                box[0].hits.append(hit)
            _answer(box[0], self, hit)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    box.append(Target(f"http://127.0.0.1:{httpd.server_address[1]}"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield box[0]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="package", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    """A server and a worker (serving ``tests.apps.server_app:yard`` and the built-in
    ``http``) allowed to reach loopback."""
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"http-targets-{backend}")
    with fresh_database(backend, folder, pg_template) as db_url:
        server = ServerProcess(db_url, folder / "server.log", keys.generate(), **ALLOW)
        worker = WorkerProcess(
            "tests.apps.server_app:yard",
            db_url,
            concurrency=8,
            log=folder / "worker.log",
            env=ALLOW,
        )
        try:
            worker.start()
            server.start()
            wait_published(server.url, server.api_key, {"http"})
            yield Served(backend, db_url, server.url, server.api_key, folder)
        finally:
            server.stop()
            worker.terminate(timeout=15)


def api(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, headers={"x-api-key": served.api_key}, timeout=30)


def wait_ended(client: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    """The run once it has ended."""

    def ended() -> dict[str, Any] | NotYet:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        done = run.get("status") in ("SUCCEEDED", "FAILED", "CANCELED", "CRASHED")
        return run if done else NotYet(run.get("status"))

    return wait_until(ended, timeout=timeout, what=f"run {run_id} ended")
