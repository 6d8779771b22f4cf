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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpcore

from runyard.errors import OutboundFailed
from runyard.outbound.guard import Resolver, resolve_checked
from runyard.outbound.policy import IPAddress, OutboundPolicy


@dataclass(frozen=True)
class OutboundResponse:
    """What came back: the status, the headers (names lower-case; a repeated header's
    values joined with ", "), the body (at most the policy's ``max_body_bytes``) and the
    time from the start of the attempt to the last body byte, ms."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the checked addresses, whatever host the connection asks for."""

    def __init__(self, addresses: Sequence[IPAddress]) -> None:
        self._addresses = list(addresses)
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: Exception | None = None
        for address in self._addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reached by outbound calls")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


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
    CAs): both for tests and private deployments.
    """
    limit = policy.timeout_s if timeout_s is None else timeout_s
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            return await _send(method, url, headers, body, policy, resolver, ssl_context, started)
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
    pool = httpcore.AsyncConnectionPool(
        ssl_context=(ssl_context or _ssl_context()) if target.scheme == "https" else None,
        network_backend=_PinnedBackend(found),
        max_connections=1,
        retries=0,
    )
    try:
        async with (
            pool,
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
