"""A tiny HTTP server on loopback that answers from a script, for the retry tests.

Run as ``python -m tests.client.stub_server PORT SCRIPT_JSON``: ``SCRIPT_JSON`` is a list
of ``[status, headers, body]`` answers given in turn to requests on any path but
``/_log``; past the end the last one repeats. ``GET /_log`` answers with the method,
path and time of every request so far.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

script: list[list[Any]] = []
log: list[dict[str, Any]] = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/_log":
            self._send(200, {}, log)
            return
        with lock:
            log.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "at": time.time(),
                    "body": body.decode() or None,
                    "auth": self.headers.get("authorization"),
                }
            )
            status, headers, answer = script[min(len(log) - 1, len(script) - 1)]
        self._send(status, headers, answer)

    def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1])
    script.extend(json.loads(sys.argv[2]))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
