"""A loopback HTTP receiver of callbacks, started by the tests: it records every request
(path, headers, body) and answers what the test asks for."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = 0.0  # time.time() when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.body)


#: Decides the answer to a request: (status, extra headers).
Answer = Callable[[str, int], tuple[int, dict[str, str]]]


def ok(path: str, n: int) -> tuple[int, dict[str, str]]:
    return 200, {}


@dataclass
class Receiver:
    """``start()`` listens on ``port`` (0: any free one; again after ``stop()``: the same)."""

    port: int = 0
    answer: Answer = ok
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.time()
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                with outer._lock:
                    n = sum(1 for r in outer.received if r.path == self.path)
                    status, extra = outer.answer(self.path, n)
                    outer.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                            arrived,
                        )
                    )
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self, status: int | None = 200) -> list[Any]:
        with self._lock:
            return [r.json for r in self.received if status is None or r.status == status]

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)
