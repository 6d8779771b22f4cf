"""What one server holds (on ``app.state.runyard``; no module-level state)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from ..errors import CapacityExceeded
from ..service import Service
from .metrics import Metrics
from .settings import ServerSettings

log = logging.getLogger("runyard.server")


class LiveGate:
    """At most ``capacity`` requests wait for runs at once (each holds a connection, a
    coroutine and a polling read); past it, 429 rather than a pile-up."""

    def __init__(self, capacity: int, metrics: Metrics) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._metrics = metrics

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        # One event loop serves every request, so check-then-take needs no lock.
        if self.in_use >= self.capacity:
            raise CapacityExceeded(
                f"the server already serves {self.capacity} live waits; retry shortly",
                retry_after=1.0,
                details={"live_capacity": self.capacity},
            )
        self.in_use += 1
        self._metrics.live_waits.set(self.in_use)
        try:
            yield
        finally:
            self.in_use -= 1
            self._metrics.live_waits.set(self.in_use)


@dataclass(eq=False)
class ServerState:
    service: Service
    settings: ServerSettings
    metrics: Metrics
    live: LiveGate
    owns_service: bool
    #: Set when the server begins to stop: long-polls answer at once, streams end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: When each API key's ``last_used_at`` was last written (written at most once a minute).
    touched: dict[str, float] = field(default_factory=dict)
    #: Whether ``settings.api_key`` is a key issued with ``runyard keys create`` (then its
    #: stored scopes and revocation apply); None until the first request that sends it.
    #: Kept once known: issued keys are never deleted, and a key not issued at the first
    #: request never will be (each issued key is new and random).
    server_key_issued: bool | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Any, what: str) -> None:
        """Run ``coro`` in the background; a failure is logged, never raised."""

        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:
                log.info("%s failed: %s", what, exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)


async def server_state(request: Request) -> ServerState:
    # async, so FastAPI does not send every request through its thread pool for it.
    state = request.app.state.runyard
    assert isinstance(state, ServerState)
    return state


State = Annotated[ServerState, Depends(server_state)]
