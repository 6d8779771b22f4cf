"""The delivery loop of a worker: writes the callback messages that are ready and sends
the due ones (see :mod:`runyard.service.callbacks`).

It wakes when a run with a callback is stored or a message redelivered (announced to
every process: :data:`~runyard.store.callbacks.CALLBACK_WORK`), when a run changes (the
store's announcements, heard once this process has seen a callback: a deployment without
callbacks pays nothing for them), when a message it sent is done, when a message comes
due, or at the latest after :data:`BACKSTOP_S` (a lost wake-up costs that much latency,
never a message). Connections to receivers are kept alive between messages
(:class:`~runyard.outbound.Connections`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..outbound import Connections
from ..service import Service, wait_event
from ..store.tx import Row

log = logging.getLogger("runyard.deliveries")

#: Messages sent at once by one worker.
CONCURRENCY = 64
#: The longest the loop sleeps without looking.
BACKSTOP_S = 2.0
#: The least time between two looks (a burst of run changes makes one look).
MIN_PASS_S = 0.005


class DeliveryLoop:
    def __init__(self, service: Service, owner: str, stopping: asyncio.Event) -> None:
        self.service = service
        self.owner = owner
        self.stopping = stopping
        self._now = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._hearing = False
        # Kept alive per checked destination between messages (a receiver takes most of
        # a run's messages, and a burst's): each send still resolves and checks the URL.
        self.connections = Connections()

    def _poke(self, _run_id: str | None = None) -> None:
        self._now.set()

    async def run(self) -> None:
        core = self.service.core
        hub = core.hub(work=True, runs=False)
        hub.add_run_listener(self._poke)
        try:
            await self._loop()
        finally:
            hub.remove_run_listener(self._poke)
            for t in list(self._inflight):
                t.cancel()  # (their messages come due again when the lease ends)
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await self.connections.aclose()

    async def _loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            self._now.clear()
            started = time.monotonic()
            try:
                wait = await self._pass()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                wait = min(BACKSTOP_S * 5, 0.1 * 2**failures)
                log.warning("callback deliveries: %s (again in %.1f s)", exc, wait)
            if wait > 0:
                await wait_event(self._now, wait)
            await asyncio.sleep(max(0.0, MIN_PASS_S - (time.monotonic() - started)))

    async def _pass(self) -> float:
        """Write what is ready, send what is due; how long to sleep at most."""
        service = self.service
        # A read first: where no callback is open and no message is due (most runs end
        # without a callback), a pass writes nothing.
        open_any, due = await service.callback_work()
        linger: float | None = None
        free = CONCURRENCY - len(self._inflight)
        claimed: list[Row] | None = None
        if open_any:
            open_runs, linger, claimed = await service.sweep_callbacks(self.owner, free)
            if open_runs and not self._hearing:
                # From now on this process hears of every run's changes.
                self._hearing = True
                service.core.hub(work=True, runs=True)
        elif free > 0 and due is not None and due <= 0:
            claimed = await service.claim_deliveries(self.owner, free)
        if claimed is not None:
            for row in claimed:
                self._send(row)
            due = await service.next_delivery_due()
        wait = BACKSTOP_S
        if due is not None and len(self._inflight) < CONCURRENCY:  # (else: woken by one done)
            wait = min(wait, max(due, 0.0))
        if linger is not None:
            wait = min(wait, linger)
        return wait

    def _send(self, row: Row) -> None:
        task = asyncio.create_task(self._deliver(row), name=f"delivery {row['id']}")
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._now.set()

    async def _deliver(self, row: Row) -> None:
        try:
            await self.service.deliver(self.owner, row, self.connections)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded nowhere: the lease ends, it is sent again
            log.warning("delivery %s: %s", row["id"], exc)
