"""ASGI middleware of the server: the request body limit (413) and request metrics."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_json
from .metrics import Metrics

_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"})


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413: at once when ``Content-Length`` says
    so, and while streaming when a chunked body grows past the limit. In the second case
    the application is told the client went away (so it stops reading and writes
    nothing) and its answer is replaced by the 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> Message:
        return {"type": "http.disconnect"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if (
                name == b"content-length"
                and value.strip().isdigit()
                and int(value) > self.max_bytes
            ):
                await self._refuse(scope, receive, send)
                return
        received = 0
        overflow = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, overflow
            if overflow:
                return self._too_large()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflow = True
                    return self._too_large()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if overflow:
                return  # the application's answer is dropped: the 413 goes out instead
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not overflow:
                raise
        if overflow and not answered:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_json(
            413,
            "payload_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
            {"max_bytes": self.max_bytes},
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class RequestMetrics:
    """Counts requests and observes their latency by method, route template and status
    (the template, not the path, so run ids do not explode the label space)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.observe_request(
                method, template or "unmatched", status, time.perf_counter() - started
            )
