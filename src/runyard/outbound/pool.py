"""Kept-alive outbound connections, reused without weakening the guard.

A :class:`Connections` keeps idle HTTP/1.1 connections (httpcore's) per *checked
destination*: the URL's scheme, host and port, the exact set of addresses the guard
checked for it at this send, the TLS trust, and the policy that allowed them. Every send
still resolves the name once and checks every address against the policy it is given
(:func:`runyard.outbound.send`); only then does it take a connection of that destination,
opened to those very addresses by the pinned network backend. So:

* a connection always goes to an address the guard checked for this send, under this
  policy: a new DNS answer, or a policy that refuses an address, makes a different key
  (and a refusal is raised before any connection is looked at), never the reuse of an
  old socket;
* there is no second resolution: the backend connects to the checked addresses only.

A request takes the most recently used idle connection of its destination (one that the
server closed or that idled past :data:`KEEPALIVE_S` is closed instead) or opens one, at
most :data:`PER_DESTINATION` at once; it goes back to the idle ones only if its response
was read to the end. (httpcore's own pool looks at every connection it holds on every
request, a system call each: with 64 connections that cost more than the request.) A
destination unused for :data:`IDLE_S` seconds, or past the :data:`MAX_DESTINATIONS` most
recent ones, is closed (never while a request is in flight on it). Connections are bound
to the event loop that first uses them; :meth:`Connections.aclose` closes them all, by
whoever owns them (the delivery loop).

A kept-alive connection the server closes just as it is reused fails that one attempt,
which the caller retries as any failed attempt (a callback's backoff, an HTTP target's
retries); the short idle time makes it rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpcore

from runyard.outbound.backend import PinnedBackend
from runyard.outbound.policy import IPAddress, OutboundPolicy

#: Connections kept open per destination (concurrent requests to one beyond it wait).
PER_DESTINATION = 64
#: An idle kept-alive connection is closed after this long; below the keep-alive timeout
#: of common servers (uvicorn 5 s, nginx and aiohttp 75 s), so that a reused connection
#: is rarely one the server is closing at that moment.
KEEPALIVE_S = 4.0
#: A destination not used for this long is closed with its connections.
IDLE_S = 30.0
#: The most destinations kept; the least recently used idle one is closed past it.
MAX_DESTINATIONS = 256

Key = tuple[str, str, int, tuple[IPAddress, ...], int, OutboundPolicy]


@dataclass
class _Destination:
    origin: httpcore.Origin
    ssl_context: ssl.SSLContext | None
    backend: PinnedBackend
    slots: asyncio.Semaphore
    idle: list[httpcore.AsyncHTTPConnection] = field(default_factory=list)
    used_at: float = field(default_factory=time.monotonic)
    inflight: int = 0

    async def take(self) -> httpcore.AsyncHTTPConnection | None:
        """The most recently used idle connection still open, if any (closing those the
        server closed or that idled too long on the way)."""
        while self.idle:
            conn = self.idle.pop()
            if conn.is_idle() and not conn.has_expired():
                return conn
            await _close(conn)
        return None

    async def aclose(self) -> None:
        conns, self.idle = self.idle, []
        for conn in conns:
            await _close(conn)


async def _close(conn: httpcore.AsyncHTTPConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.aclose()


class Connections:
    """Kept-alive connections per checked destination (see the module)."""

    def __init__(
        self,
        *,
        per_destination: int = PER_DESTINATION,
        keepalive_s: float = KEEPALIVE_S,
        idle_s: float = IDLE_S,
        max_destinations: int = MAX_DESTINATIONS,
    ) -> None:
        self.per_destination = per_destination
        self.keepalive_s = keepalive_s
        self.idle_s = idle_s
        self.max_destinations = max_destinations
        self._loop: asyncio.AbstractEventLoop | None = None
        self._destinations: OrderedDict[Key, _Destination] = OrderedDict()
        self._closed = False

    def usable(self) -> bool:
        """Whether the running loop may use these connections (the loop they are bound
        to, or the first to ask; not once closed)."""
        loop = asyncio.get_running_loop()
        if self._closed or (self._loop is not None and self._loop is not loop):
            return False
        self._loop = loop
        return True

    @property
    def destinations(self) -> int:
        """How many destinations are kept now."""
        return len(self._destinations)

    def idle(self) -> int:
        """How many idle connections are kept now, all destinations together."""
        return sum(len(d.idle) for d in self._destinations.values())

    @asynccontextmanager
    async def connection(
        self,
        scheme: str,
        host: str,
        port: int,
        addresses: Sequence[IPAddress],
        ssl_context: ssl.SSLContext | None,
        policy: OutboundPolicy,
    ) -> AsyncIterator[httpcore.AsyncHTTPConnection]:
        """A connection of this checked destination for one request (``host``: the
        name or the literal, without brackets). The caller has just checked
        ``addresses`` under ``policy``; the connection is kept if the response was read
        to the end."""
        key: Key = (scheme, host, port, tuple(addresses), id(ssl_context), policy)
        dest = self._destinations.get(key)
        if dest is None:
            dest = _Destination(
                origin=httpcore.Origin(scheme.encode(), host.encode("ascii"), port),
                ssl_context=ssl_context,
                backend=PinnedBackend(addresses),
                slots=asyncio.Semaphore(self.per_destination),
            )
            self._destinations[key] = dest
        else:
            self._destinations.move_to_end(key)
        dest.inflight += 1
        try:
            async with dest.slots:
                conn = await dest.take() or httpcore.AsyncHTTPConnection(
                    dest.origin,
                    ssl_context=dest.ssl_context,
                    keepalive_expiry=self.keepalive_s,
                    network_backend=dest.backend,
                )
                kept = False
                try:
                    yield conn
                    kept = conn.is_idle() and not self._closed
                finally:
                    if kept:
                        dest.idle.append(conn)
                    else:
                        await asyncio.shield(_close(conn))
        finally:
            dest.inflight -= 1
            dest.used_at = time.monotonic()
            await self._expire()

    async def _expire(self) -> None:
        """Close destinations idle too long, and the oldest idle ones past the bound."""
        now = time.monotonic()
        stale: list[Key] = []
        over = len(self._destinations) - self.max_destinations
        for key, dest in self._destinations.items():  # least recently used first
            if dest.inflight:
                continue
            if over > 0 or now - dest.used_at > self.idle_s:
                stale.append(key)
                over -= 1
            elif over <= 0:
                break
        for key in stale:
            await self._destinations.pop(key).aclose()

    async def aclose(self) -> None:
        """Close every connection; later sends through this object use one of their own."""
        self._closed = True
        dests = list(self._destinations.values())
        self._destinations.clear()
        for dest in dests:
            await dest.aclose()
