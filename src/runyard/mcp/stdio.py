"""``runyard mcp``: the MCP server over stdio, its runs reached through the HTTP SDK.

The protocol is the official ``mcp`` SDK's (its server, its JSON-RPC message types, its
framing: one JSON message per line, UTF-8); only the byte pump differs from
``mcp.server.stdio.stdio_server``. The SDK's transport reads and writes through anyio
worker threads (a thread hand-off per message each way, plus two memory-stream task
hops); :func:`pipe_streams` reads and writes the pipes on the event loop itself
(``connect_read_pipe`` / ``connect_write_pipe``): a message is parsed as its bytes
arrive and written by the task that sends it. Where standard input or output is not a
pipe or socket (a terminal, a file), or on Windows, the SDK's transport serves as before.
"""

from __future__ import annotations

import asyncio
import collections
import os
import stat
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from types import TracebackType
from typing import Any, Self, cast

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from ..client import AsyncClient
from ..config import DEFAULT_RETENTION_DAYS, env_number
from .port import ClientPort
from .server import build_server

#: Complete messages read ahead of the server before reading pauses (backpressure).
READ_AHEAD = 64
#: How long closing waits for written messages to leave (seconds).
FLUSH_TIMEOUT_S = 10.0


async def serve_stdio(url: str | None, api_key: str | None, wait_s: float) -> None:
    """Serve MCP on standard input and output until the client closes them."""
    async with AsyncClient(url, api_key, max_retries=3, backoff_s=0.25) as client:
        # (How long the server keeps ended runs, for the Tasks extension's ttlMs: the
        # server's setting when it is set here too, else its default.)
        retention_days = env_number("RUNYARD_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
        server = build_server(ClientPort(client), wait_s, retention_s=retention_days * 86400)
        async with AsyncExitStack() as stack:
            if pipe_capable(0) and pipe_capable(1):
                read, write = await stack.enter_async_context(std_pipe_streams())
            else:
                read, write = await stack.enter_async_context(stdio_server())
            await server.run(read, write, server.create_initialization_options())


# -- the transport ------------------------------------------------------------------------


def pipe_capable(fd: int) -> bool:
    """Whether ``fd`` is a pipe or a socket the event loop can serve (not on Windows)."""
    if sys.platform == "win32":  # pragma: no cover
        return False
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _parse(line: bytes) -> SessionMessage | Exception:
    """One line as the SDK's stdio transport reads it (UTF-8, bad bytes replaced)."""
    try:
        message = types.jsonrpc_message_adapter.validate_json(
            line.decode("utf-8", "replace"), by_name=False
        )
    except Exception as exc:  # (the SDK hands the server the error, as here)
        return exc
    return SessionMessage(message)


class _Reader(asyncio.Protocol):
    """Splits the bytes read into lines and parses each into the SDK's message."""

    def __init__(self) -> None:
        self.items: collections.deque[SessionMessage | Exception] = collections.deque()
        self.buffer = bytearray()
        self.scanned = 0  # (no newline in buffer[:scanned])
        self.eof = False
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.ReadTransport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.ReadTransport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", max(start, self.scanned))) >= 0:
            self.items.append(_parse(bytes(buffer[start:end])))
            start = end + 1
            self.scanned = 0
        if start:
            del buffer[:start]
        self.scanned = len(buffer)
        if self.items:
            self._wake()
            if len(self.items) >= READ_AHEAD and self.transport is not None:
                self.transport.pause_reading()
                self.paused = True

    def eof_received(self) -> bool | None:
        if self.buffer:  # (a last line without its newline, as the SDK reads it)
            self.items.append(_parse(bytes(self.buffer)))
            self.buffer.clear()
        self.eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> SessionMessage | Exception:
        while not self.items:
            if self.eof:
                raise anyio.EndOfStream
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        item = self.items.popleft()
        if self.paused and len(self.items) < READ_AHEAD // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return item


class _Closing(ABC):
    """``async with`` closes the stream (as anyio's streams do)."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


class PipeReadStream(_Closing):
    """The SDK's read stream (``mcp.shared._stream_protocols.ReadStream``) over a
    :class:`_Reader`: each item a message, or the exception of a line that is none."""

    def __init__(self, reader: _Reader) -> None:
        self._reader = reader
        self._closed = False

    async def receive(self) -> SessionMessage | Exception:
        if self._closed:
            raise anyio.ClosedResourceError
        return await self._reader.next()

    async def aclose(self) -> None:
        self._closed = True

    def __aiter__(self) -> PipeReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class _Writer(asyncio.Protocol):
    """Flow control of the write pipe: ``drain`` waits while its buffer is full."""

    def __init__(self) -> None:
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._release()

    def connection_lost(self, exc: Exception | None) -> None:
        self.paused = False
        self._release()
        if not self.lost.done():
            self.lost.set_result(None)

    def _release(self) -> None:
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        while self.paused:
            self.drained = asyncio.get_running_loop().create_future()
            try:
                await self.drained
            finally:
                self.drained = None


class PipeWriteStream(_Closing):
    """The SDK's write stream (``WriteStream``): each message serialized as the SDK's
    stdio transport does it (``model_dump_json(by_alias=True, exclude_unset=True)``, a
    newline) and handed to the pipe at once, by the sending task."""

    def __init__(self, transport: asyncio.WriteTransport, writer: _Writer) -> None:
        self._transport = transport
        self._writer = writer
        self._closed = False

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._transport.is_closing():
            raise anyio.BrokenResourceError
        data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
        self._transport.write(data.encode() + b"\n")
        if self._writer.paused:
            await self._writer.drain()

    async def aclose(self) -> None:
        self._closed = True


@asynccontextmanager
async def pipe_streams(
    read_fd: int, write_fd: int
) -> AsyncIterator[tuple[PipeReadStream, PipeWriteStream]]:
    """The SDK's read and write streams over pipe (or socket) descriptors, served by the
    event loop. The descriptors are the caller's: duplicates are served and closed here,
    and each one's blocking mode is restored on the way out. The read stream ends at
    the reader's EOF; leaving waits (up to ``FLUSH_TIMEOUT_S``) for what was written to
    leave."""
    loop = asyncio.get_running_loop()
    flags = {fd: _get_flags(fd) for fd in (read_fd, write_fd)}
    try:
        async with AsyncExitStack() as stack:
            # (Each transport owns its file from here: it closes it.)
            rfile = os.fdopen(_dup(read_fd), "rb", buffering=0)
            try:
                rtransport, reader = await loop.connect_read_pipe(_Reader, rfile)
            except BaseException:
                _close_quietly(rfile)
                raise
            stack.callback(rtransport.close)
            wfile = os.fdopen(_dup(write_fd), "wb", buffering=0)
            try:
                wtransport, writer = await loop.connect_write_pipe(_Writer, wfile)
            except BaseException:
                _close_quietly(wfile)
                raise
            stack.push_async_callback(_flush, wtransport, writer)
            yield PipeReadStream(reader), PipeWriteStream(wtransport, writer)
    finally:
        for fd, fl in flags.items():
            _set_flags(fd, fl)


@asynccontextmanager
async def std_pipe_streams() -> AsyncIterator[tuple[PipeReadStream, PipeWriteStream]]:
    """:func:`pipe_streams` over standard input and output. While serving, as with the
    SDK's transport, descriptor 0 reads the null device and 1 writes to standard error,
    so stray output of the process misses the wire; both are restored on exit."""
    wire_in = _dup(0)
    wire_out = _dup(1)
    try:
        _divert(0, lambda: os.open(os.devnull, os.O_RDONLY))
        _divert(1, lambda: os.dup(2))
        try:
            async with pipe_streams(wire_in, wire_out) as streams:
                yield streams
        finally:
            os.dup2(wire_out, 1)
            os.dup2(wire_in, 0)
    finally:
        os.close(wire_in)
        os.close(wire_out)


async def _flush(transport: asyncio.WriteTransport, writer: _Writer) -> None:
    transport.close()  # (after what is buffered is written)
    with anyio.move_on_after(FLUSH_TIMEOUT_S, shield=True):
        await writer.lost
    if not writer.lost.done():  # (the reader is gone or stuck: drop the rest)
        transport.abort()


def _dup(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _divert(fd: int, open_target: Callable[[], int]) -> None:
    target = open_target()
    try:
        os.dup2(target, fd)
    finally:
        os.close(target)


def _get_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _set_flags(fd: int, flags: int) -> None:
    import fcntl

    with suppress(OSError):  # (closed under us)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def _close_quietly(file: Any) -> None:
    with suppress(OSError):
        file.close()
