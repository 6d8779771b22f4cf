"""While the database is unreachable the API answers 503 with ``Retry-After`` (never a
500) and /healthz says "unavailable"; when it returns, the server recovers by itself.
PostgreSQL only: the test cuts the server's connections with a TCP proxy it controls."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from tests.server.conftest import ServerFactory, client, create_keys, free_port
from tests.waiting import wait_until


class Proxy:
    """A TCP forwarder to PostgreSQL on a port of its own that can be cut and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and drop every open connection (as a crashed database would)."""
        if self._listener is not None:
            # close() alone would not wake the thread blocked in accept(), which keeps
            # the socket listening; shutdown() does.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client_sock, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client_sock, upstream]
            for a, b in ((client_sock, upstream), (upstream, client_sock)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(pg_db_url: str) -> Iterator[Proxy]:
    parsed = urlparse(pg_db_url)
    p = Proxy((parsed.hostname or "127.0.0.1", parsed.port or 5432))
    p.open()
    yield p
    p.cut()


def test_database_away_answers_503_and_recovers(
    pg_db_url: str, proxy: Proxy, pg_server_factory: ServerFactory
) -> None:
    keys = create_keys(pg_db_url)
    parsed = urlparse(pg_db_url)
    via_proxy = parsed._replace(netloc=f"{parsed.username}@127.0.0.1:{proxy.port}").geturl()
    server = pg_server_factory(via_proxy, RUNYARD_SERVER_DB_RETRY_S="1")
    with client(server, keys.write, timeout=30) as api:
        assert api.get("/v1/runs").status_code == 200
        assert httpx.get(server.url + "/healthz").json()["status"] == "ok"

        proxy.cut()
        started = time.monotonic()
        r = api.get("/v1/runs")
        assert r.status_code == 503, r.text
        assert time.monotonic() - started < 10
        assert r.json()["error"]["code"] == "store_unavailable"
        assert int(r.headers["retry-after"]) >= 1
        r = api.post(
            "/v1/runs", json={"workflow": "greet", "input": {"name": "a"}, "run_id": "lost-1"}
        )
        assert r.status_code == 503
        health = httpx.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert httpx.get(server.url + "/v1/runs").status_code == 401  # no key: no database needed

        proxy.open()
        wait_until(
            lambda: api.get("/v1/runs").status_code == 200,
            timeout=20,
            interval=0.1,
            what="the runs listed once the database is back",
        )
        assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
        assert api.get("/v1/runs/lost-1").status_code == 404  # the refused run was not written


def test_unreachable_from_the_start(pg_db_url: str, pg_server_factory: ServerFactory) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/runyard"
    server = pg_server_factory(closed, RUNYARD_SERVER_DB_RETRY_S="1", RUNYARD_API_KEY="dev-key-123")
    health = httpx.get(server.url + "/healthz", timeout=10)
    assert health.status_code == 503 and health.json() == {
        "status": "unavailable",
        "database": "postgres",
        "version": health.json()["version"],
    }
    with client(server, "dev-key-123", timeout=30) as dev:
        for method, path in (
            ("GET", "/v1/runs"),
            ("GET", "/v1/workflows"),
            ("POST", "/v1/events/e"),
        ):
            r = dev.request(method, path)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"]["code"] == "store_unavailable"
    # A stored key cannot be checked without the database: 503, not 401.
    from runyard import keys

    r = httpx.get(server.url + "/v1/runs", headers={"x-api-key": keys.generate()}, timeout=30)
    assert r.status_code == 503
