"""``runyard mcp``: the MCP server over stdio, its runs reached through the HTTP SDK."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from ..client import AsyncClient
from ..config import DEFAULT_RETENTION_DAYS, env_number
from .port import ClientPort
from .server import build_server


async def serve_stdio(url: str | None, api_key: str | None, wait_s: float) -> None:
    """Serve MCP on standard input and output until the client closes them."""
    async with AsyncClient(url, api_key, max_retries=3, backoff_s=0.25) as client:
        # (How long the server keeps ended runs, for the Tasks extension's ttlMs: the
        # server's setting when it is set here too, else its default.)
        retention_days = env_number("RUNYARD_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
        server = build_server(ClientPort(client), wait_s, retention_s=retention_days * 86400)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
