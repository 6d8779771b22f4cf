"""``runyard mcp``: the MCP server over stdio, for AI assistants (Claude Desktop, Claude
Code, Cursor, ...), talking to a Runyard server through the HTTP SDK."""

from __future__ import annotations

import typer

from .common import ApiKeyOption, UrlOption

#: How long one tool call waits for a run by default (seconds).
DEFAULT_WAIT_S = 30.0


def mcp(
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
    wait: float = typer.Option(
        DEFAULT_WAIT_S,
        "--wait",
        envvar="RUNYARD_MCP_WAIT",
        show_envvar=True,
        min=0.0,
        help="How long one tool call waits for its run before answering that the run "
        "continues in the background (seconds)",
    ),
) -> None:
    """Serve the workflows as MCP tools over stdio (standard input and output carry the
    protocol: configure this command in the assistant, do not run it in a terminal)."""
    from .. import loop
    from ..mcp.stdio import serve_stdio

    loop.run(serve_stdio(url, api_key, wait))
