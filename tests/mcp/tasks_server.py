"""``python -m tests.mcp.tasks_server PORT``: the MCP server of ``runyard.mcp.server``
with the Tasks extension, over the in-process service, at ``/mcp`` on streamable HTTP
on loopback, in a process of its own (what the API server's ``/mcp`` serves; this one
stands alone so that the extension is tested whatever mounts it).

A request whose ``x-api-key`` header starts with ``read-`` counts as read-scoped."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from runyard.config import Settings
from runyard.mcp.port import ServicePort
from runyard.mcp.server import Ctx, build_server, run_result, tool_input
from runyard.mcp.tasks import RunTasks
from runyard.service import Core, Service


def may_write(ctx: Ctx) -> bool:
    request: Any = ctx.request
    key = request.headers.get("x-api-key", "") if isinstance(request, Request) else ""
    return not str(key).startswith("read-")


def main(port: int) -> None:
    settings = Settings.from_env()
    service = Service(Core(settings))
    runs = ServicePort(service)
    tasks = RunTasks(
        runs,
        tool_result=run_result,
        tool_input=tool_input,
        may_write=may_write,
        retention_s=settings.retention_days * 86400,
    )
    server = build_server(runs, 1.0, extensions=[tasks], may_write=may_write)
    manager = StreamableHTTPSessionManager(app=server, stateless=True)

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await service.core.ensure_ready()
        async with manager.run():
            yield

    app = Starlette(routes=[Mount("/mcp", app=handle)], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
