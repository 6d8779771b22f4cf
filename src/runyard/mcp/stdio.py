"""``runyard mcp``: the MCP server over stdio, its runs reached through the HTTP SDK."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from ..client import AsyncClient
from .port import ClientPort
from .server import build_server


async def serve_stdio(url: str | None, api_key: str | None, wait_s: float) -> None:
    """Serve MCP on standard input and output until the client closes them."""
    async with AsyncClient(url, api_key, max_retries=3, backoff_s=0.25) as client:
        server = build_server(ClientPort(client), wait_s)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
