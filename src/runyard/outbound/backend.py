"""The network backend of outbound calls: it connects to the addresses the guard
checked, whatever host a connection asks for (no second resolution)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import httpcore

from runyard.outbound.policy import IPAddress


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the checked addresses, in order (the next one if a connect fails)."""

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
