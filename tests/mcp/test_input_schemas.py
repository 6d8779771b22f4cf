"""The input schemas the server hands the SDK for its ``Mcp-Param-*`` header check of a
``tools/call`` (``Server.get_tool_input_schema``: without it the SDK runs the whole
``tools/list`` handler on every call): each tool's schema exactly as ``tools/list``
gave it, through the official ``mcp`` client SDK on the real server object."""

from __future__ import annotations

from typing import Any, cast

import pytest

from mcp import Client
from runyard.mcp.port import FIXED_TOOLS, RunsPort, WorkflowInfo
from runyard.mcp.server import build_server

pytestmark = pytest.mark.anyio

PUBLISHED = [
    WorkflowInfo("noop", None, {"type": "integer"}),
    WorkflowInfo(
        "greet",
        "Greet someone.",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    ),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Published:
    """The one operation of a port that listing tools needs."""

    async def workflows(self) -> list[WorkflowInfo]:
        return list(PUBLISHED)


async def test_the_schema_lookup_answers_as_tools_list() -> None:
    server = build_server(cast(RunsPort, _Published()), 1.0)
    lookup = server.get_tool_input_schema
    assert lookup is not None
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == {"noop", "greet", *FIXED_TOOLS}
    for tool in tools:
        assert lookup(tool.name) == tool.input_schema, tool.name
    wrapped: Any = lookup("noop")
    assert wrapped["properties"]["input"] == {"type": "integer"}
    assert lookup("no_such_tool") is None
