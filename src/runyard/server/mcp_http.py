"""Streamable HTTP MCP at ``/mcp``, behind the API keys (401 without one; a read-scoped
key lists and calls only the read tools). Its tools reach runs through the server's
own service (:class:`~runyard.mcp.port.ServicePort`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from .. import keys
from ..errors import RunyardError, StoreUnavailable
from ..mcp.port import ServicePort
from ..mcp.server import Ctx, RunyardServer, build_server
from .auth import authenticate
from .errors import runyard_error_response
from .state import ServerState

#: Where the caller's scopes travel from the key check to the tools.
SCOPES_KEY = "runyard.scopes"


def may_write(ctx: Ctx) -> bool:
    """Whether the caller's key has the ``write`` scope (told by :class:`McpEndpoint`)."""
    scope = getattr(ctx.request, "scope", None)
    scopes = scope.get(SCOPES_KEY) if isinstance(scope, dict) else None
    return scopes is not None and keys.allows(scopes, "write")


class McpEndpoint:
    """The ASGI app of ``/mcp``: the key checked, then the SDK's session manager, which
    runs for as long as the app's lifespan (:meth:`running`)."""

    def __init__(self, state: ServerState, wait_s: float) -> None:
        self.state = state
        self.server: RunyardServer = build_server(
            ServicePort(state.service),
            wait_s,
            may_write=may_write,
            retention_s=state.service.core.settings.retention_days * 86400,
        )
        self.manager: StreamableHTTPSessionManager | None = None
        #: The requests being answered: ended when the server begins to stop, so an open
        #: stream (a waiting tool call, subscriptions/listen) never holds the graceful
        #: shutdown. (The runs go on: a client's request never owns its run.)
        self._open: set[anyio.CancelScope] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # A manager runs once: a new one each time the app is served.
        manager = StreamableHTTPSessionManager(app=self.server, json_response=False)

        async def end_streams_on_stop() -> None:
            await self.state.stopping.wait()
            self.manager = None
            for scope in list(self._open):
                scope.cancel()

        async with manager.run():
            self.manager = manager
            stopper = asyncio.create_task(end_streams_on_stop(), name="runyard-mcp-stop")
            try:
                yield
            finally:
                self.manager = None
                stopper.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            principal = await authenticate(self.state, request)
        except RunyardError as exc:
            await runyard_error_response(exc, request.method)(scope, receive, send)
            return
        manager = self.manager
        if manager is None:
            await runyard_error_response(
                StoreUnavailable("the server is not serving MCP (starting or stopping)"),
                request.method,
            )(scope, receive, send)
            return
        inner: dict[str, Any] = dict(scope)
        inner[SCOPES_KEY] = principal.scopes
        with anyio.CancelScope() as open_request:
            self._open.add(open_request)
            try:
                await manager.handle_request(inner, receive, send)
            finally:
                self._open.discard(open_request)
