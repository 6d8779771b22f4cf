"""Reading runs and waiting for them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, cast

from ..errors import Timeout
from ..models import (
    Attempt,
    Item,
    ItemState,
    LogLine,
    Output,
    Page,
    Run,
    RunStatus,
    StepRecord,
    Transition,
    Waiter,
)
from ..rules import check_event_id, invalid
from ..store import RunFilter
from ..store.hub import Hub, wait_event
from ..store.tx import Row
from .core import Core
from .handles import RunHandle

if TYPE_CHECKING:
    from . import Service

#: Lines a log read returns at most.
LOG_LIMIT_MAX = 10_000


class ReadMixin:
    """A run, its lists, and waiting for it to end."""

    core: Core

    async def get_run(self, run_id: str) -> Run:
        run = await self.core.read(self.core.store.get_run, run_id, inline=True)
        if run.status not in (RunStatus.RUNNING, RunStatus.QUEUED):
            return run
        lease = await self.core.read(self.core.store.run_lease, run_id, inline=True)
        return dataclasses.replace(run, lease=lease) if lease is not None else run

    def handle(self, run_id: str) -> RunHandle:
        return self._handle(run_id, created=False)

    def _handle(
        self,
        run_id: str,
        created: bool,
        row: Row | None = None,
        seen: tuple[Hub, int] | None = None,
    ) -> RunHandle:
        # Every mixin of the service is a part of Service, which the handle calls back.
        return RunHandle(cast("Service", self), run_id, created, row, seen)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | Sequence[str] | None = None,
        task_id: str | None = None,
        schedule_id: str | None = None,
        mode: str | None = None,
        prefix: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
        order: str = "desc",
        sort: str = "created_at",
    ) -> Page:
        """Runs matching the filters, a page at a time, in ``order`` of ``sort``
        (``created_at``, ``started_at``, ``finished_at`` or ``status``); ``cursor`` is the
        previous page's ``next_cursor`` of the same sort and order."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        for s in statuses:
            if s not in RunStatus.__members__:
                raise invalid("status", f"unknown status {s!r}", "unknown status")
        filt = RunFilter(
            workflow=workflow,
            statuses=statuses or None,
            task_id=task_id,
            schedule_id=schedule_id,
            mode=mode,
            prefix=prefix,
            created_after=created_after,
            created_before=created_before,
        )
        return await self.core.read(self.core.store.list_runs, filt, cursor, limit, order, sort)

    async def steps(self, run_id: str) -> list[StepRecord]:
        await self.get_run(run_id)
        return await self.core.read(self.core.store.get_steps, run_id)

    async def attempts(self, run_id: str) -> list[Attempt]:
        return await self.core.read(self.core.store.get_attempts, run_id)

    async def items(
        self,
        run_id: str,
        *,
        state: str | None = None,
        kinds: Sequence[str] = ("input", "map"),
        offset: int = 0,
        limit: int = 100,
    ) -> list[Item]:
        """The run's items in order: its inputs and the items its steps fanned out
        (``kinds``), in ``state`` if given."""
        await self.get_run(run_id)
        read = functools.partial(
            self.core.store.get_items, state=state, kinds=kinds, offset=offset, limit=limit
        )
        return await self.core.read(read, run_id)

    async def queue(
        self,
        run_id: str,
        *,
        state: ItemState | None = None,
        include_history: bool = False,
        offset: int = 0,
        limit: int = 100,
    ) -> list[Item]:
        """The run's queue in item order: by default only the items still to do (queued
        and processing); with ``include_history`` every item, with ``state`` those in it."""
        if state is not None or include_history:
            return await self.items(
                run_id, state=state.value if state else None, offset=offset, limit=limit
            )
        want = offset + limit
        active = [
            *await self.items(run_id, state=ItemState.QUEUED.value, limit=want),
            *await self.items(run_id, state=ItemState.PROCESSING.value, limit=want),
        ]
        return sorted(active, key=lambda i: i.idx)[offset : offset + limit]

    async def outputs(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[Output]:
        await self.get_run(run_id)
        store = self.core.store
        return await self.core.read(store.get_outputs, run_id, after, limit, inline=limit <= 100)

    async def logs(
        self, run_id: str, *, after: int | None = None, limit: int = 100
    ) -> list[LogLine]:
        """The lines the run's workflow logged through ``ctx.logger``, in the order they
        were written: up to ``limit`` (1-10000) after the line with id ``after``."""
        if not isinstance(after, int | None) or isinstance(after, bool) or (after or 0) < 0:
            raise invalid(
                "after", "after must be a log line id (an integer >= 0)", "not a log line id"
            )
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= LOG_LIMIT_MAX:
            raise invalid(
                "limit",
                f"limit must be an integer between 1 and {LOG_LIMIT_MAX}",
                "between 1 and 10000",
            )
        await self.get_run(run_id)
        store = self.core.store
        return await self.core.read(store.get_logs, run_id, after or 0, limit, inline=limit <= 100)

    async def transitions(self, run_id: str) -> list[Transition]:
        """Every status change of the run with its time (database clock), oldest first;
        RunNotFound for an unknown run."""
        await self.get_run(run_id)
        return await self.core.read(self.core.store.get_transitions, run_id)

    async def waiters(self, event_id: str) -> list[Waiter]:
        return await self.core.read(self.core.store.get_waiters, check_event_id(event_id))

    @contextlib.contextmanager
    def run_changes(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``run_id`` may have changed (its status: progress and
        outputs are not announced), for as long as the block runs."""
        hub = self.core.hub()
        ev = hub.run_event(run_id)
        try:
            yield ev
        finally:
            hub.drop_run_event(run_id, ev)

    async def wait(
        self,
        run_id: str,
        timeout: float | None = None,
        *,
        known: tuple[Run, Hub, int] | None = None,
    ) -> Run:
        """The run once it is terminal; :class:`Timeout` after ``timeout`` seconds.
        ``known``: the run as it was at a mark of a hub, taken for the run's state instead
        of a first read while that hub has heard nothing of it since."""
        core = self.core
        await core.ensure_ready()
        hub = core.hub()
        ev = hub.run_event(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                ev.clear()
                if (
                    known is not None
                    and known[1] is hub
                    and not hub.changed_since(run_id, known[2])
                ):
                    run = known[0]
                else:
                    run = await self.get_run(run_id)
                known = None
                if run.terminal:
                    return run
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Timeout(
                        f"run {run_id} is still {run.status.value} after {timeout} s",
                        details={"run_id": run_id, "status": run.status.value},
                    )
                poll_s = core.settings.poll_s
                step = poll_s if remaining is None else min(remaining, poll_s)
                with contextlib.suppress(TimeoutError):
                    await wait_event(ev, step)
        finally:
            hub.drop_run_event(run_id, ev)
