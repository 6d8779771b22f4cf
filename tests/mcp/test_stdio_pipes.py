"""``runyard mcp``'s stdio transport (``runyard.mcp.stdio.pipe_streams``): the SDK's
framing over pipes served by the event loop. In process over ``os.pipe()``: a message
written in pieces arrives whole, several in one read arrive each, a line that is no
message is handed on as its error (as the SDK's transport does), a last line without
its newline is read at EOF, and EOF ends the read stream; written messages are the SDK's
serialization, one per line, and leave before the streams close. (Against a real
server: ``tests.mcp.test_mcp.test_stdio_raw_large_call_then_eof``.)"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.message import SessionMessage

from runyard.mcp.stdio import pipe_streams

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _request(id: int, method: str, params: dict[str, Any]) -> bytes:
    return (
        json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}) + "\n"
    ).encode()


async def test_pieces_lines_errors_and_eof() -> None:
    to_server_r, to_server_w = os.pipe()
    from_server_r, from_server_w = os.pipe()
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(from_server_r, 1 << 20):
            received.extend(chunk)

    answer = types.JSONRPCResponse(jsonrpc="2.0", id=2, result={"big": "y" * 200_000})
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, drain)
            async with pipe_streams(to_server_r, from_server_w) as (read, write):
                # (The transport reads and writes duplicates: these are closed here.)
                os.close(from_server_w)
                os.close(to_server_r)
                from_server_w = to_server_r = -1
                name = "x" * 300_000
                big = _request(1, "tools/call", {"name": "greet", "arguments": {"name": name}})
                third = len(big) // 3
                for piece in (big[:third], big[third : 2 * third], big[2 * third :]):
                    await anyio.to_thread.run_sync(os.write, to_server_w, piece)
                    await anyio.sleep(0.02)  # (each piece its own read)
                first = await read.receive()
                assert isinstance(first, SessionMessage)
                assert isinstance(first.message, types.JSONRPCRequest)
                assert first.message.params is not None
                assert first.message.params["arguments"]["name"] == name

                both = _request(2, "ping", {}) + b"not json\n" + _request(3, "ping", {})[:-1]
                os.write(to_server_w, both)
                os.close(to_server_w)
                to_server_w = -1
                items = [item async for item in read]  # (ends at EOF)
                assert len(items) == 3
                assert isinstance(items[1], Exception)
                ids = [
                    i.message.id
                    for i in items
                    if isinstance(i, SessionMessage) and isinstance(i.message, types.JSONRPCRequest)
                ]
                assert ids == [2, 3]  # (the last one: its line without a newline)

                await write.send(SessionMessage(answer))  # (more than the pipe holds)
        # (Closed: what was written has left, and the reader saw EOF.)
        expected = answer.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
        assert received.decode() == expected
    finally:
        for fd in (to_server_r, to_server_w, from_server_r, from_server_w):
            if fd >= 0:
                os.close(fd)
