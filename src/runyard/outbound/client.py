"""The one outbound HTTP client: callbacks and HTTP-target runs both send through here.

:func:`send` resolves the URL's host once, refuses it when any address is refused (the
guard in :mod:`runyard.outbound.guard`), then connects to the checked addresses only (no
second resolution: a network backend pinned to them), while the request carries the
original ``Host`` header and TLS verifies the certificate against the original name
(SNI too). Redirects are not followed: a 3xx comes back as a response. The whole
attempt is bounded in time, and the body is read as a stream and refused past the limit.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpcore

from runyard.errors import OutboundFailed
from runyard.outbound.backend import PinnedBackend
from runyard.outbound.guard import Resolver, resolve_checked
from runyard.outbound.policy import IPAddress, OutboundPolicy
from runyard.outbound.pool import Connections


@dataclass(frozen=True)
class OutboundResponse:
    """What came back: the status, the headers (names lower-case; a repeated header's
    values joined with ", "), the body (at most the policy's ``max_body_bytes``) and the
    time from the start of the attempt to the last body byte, ms."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float


#: Characters kept as they are in the request target (the rest is percent-encoded).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"

_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpcore.default_ssl_context()
    return _SSL_CONTEXT


def _headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


async def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    policy: OutboundPolicy,
    timeout_s: float | None = None,
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connections: Connections | None = None,
) -> OutboundResponse:
    """Send one request through the guard and return the response (any status, 3xx too:
    redirects are never followed; the caller decides what a status means).

    ``timeout_s`` (default: the policy's, 15 s) bounds the whole attempt, DNS included.
    Raises :class:`~runyard.errors.OutboundRefused` when the URL is invalid or any
    address of its host is refused now (DNS answers change: this is checked on every
    send), :class:`~runyard.errors.OutboundFailed` when the name does not resolve, the
    connection fails, the time runs out, the body exceeds ``policy.max_body_bytes``, or
    the server breaks the protocol (a TLS certificate not valid for the URL's name too).
    ``resolver`` replaces the system resolver, ``ssl_context`` the default trust (certifi's
    CAs): both for tests and private deployments. ``connections`` keeps connections
    alive per checked destination (:class:`~runyard.outbound.pool.Connections`; the
    guard's checks are the same); without it the connection is closed after the call.
    """
    limit = policy.timeout_s if timeout_s is None else timeout_s
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            return await _send(
                method, url, headers, body, policy, resolver, ssl_context, connections, started
            )
    except TimeoutError:
        raise OutboundFailed(
            f"no complete response within {limit:g} s", details={"url": url}
        ) from None


async def _send(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    policy: OutboundPolicy,
    resolver: Resolver | None,
    ssl_context: ssl.SSLContext | None,
    connections: Connections | None,
    started: float,
) -> OutboundResponse:
    target, found = await resolve_checked(url, policy, resolver)
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    request_headers = [(b"Host", host_header.encode("ascii"))]  # the checked name's
    try:
        request_headers += [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()
            if k.lower() != "host"
        ]
    except UnicodeEncodeError:
        raise OutboundFailed(
            "a request header name or value is not Latin-1 text", details={"url": url}
        ) from None
    request_url = httpcore.URL(
        scheme=target.scheme.encode(),
        host=target.host.strip("[]").encode("ascii"),
        port=target.port,
        target=path.encode("ascii"),
    )
    trust = (ssl_context or _ssl_context()) if target.scheme == "https" else None
    held: AbstractAsyncContextManager[httpcore.AsyncConnectionPool | httpcore.AsyncHTTPConnection]
    if connections is not None and connections.usable():
        held = connections.connection(
            target.scheme, target.host.strip("[]"), target.port, found, trust, policy
        )
    else:
        held = _one_shot(found, trust)
    try:
        async with (
            held as pool,
            pool.stream(
                method.upper(), request_url, headers=request_headers, content=body
            ) as response,
        ):
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_stream():
                size += len(chunk)
                if size > policy.max_body_bytes:
                    raise OutboundFailed(
                        f"the response body is larger than {policy.max_body_bytes} bytes",
                        details={"url": url, "limit": policy.max_body_bytes},
                    )
                chunks.append(chunk)
            return OutboundResponse(
                status=response.status,
                headers=_headers(response.headers),
                body=b"".join(chunks),
                elapsed_ms=(time.monotonic() - started) * 1000.0,
            )
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise OutboundFailed(
            f"{type(exc).__name__}: {exc or 'no detail'}", details={"url": url}
        ) from None
    except httpcore.UnsupportedProtocol as exc:
        raise OutboundFailed(str(exc), details={"url": url}) from None


@asynccontextmanager
async def _one_shot(
    found: Sequence[IPAddress], trust: ssl.SSLContext | None
) -> AsyncIterator[httpcore.AsyncConnectionPool]:
    """A pool of one connection to the checked addresses, closed after the call."""
    async with httpcore.AsyncConnectionPool(
        ssl_context=trust, network_backend=PinnedBackend(found), max_connections=1, retries=0
    ) as pool:
        yield pool
