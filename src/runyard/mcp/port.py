"""What the MCP tools need of Runyard, and the two ways to get it.

:class:`RunsPort` is the seam between the MCP server (``runyard.mcp.server``, and the
Tasks extension in ``runyard.mcp.tasks``) and Runyard: every tool calls it, none
touches the store. Two adapters implement it:

* :class:`ServicePort` over the in-process :class:`runyard.service.Service` (the API
  server's ``/mcp``);
* :class:`ClientPort` over :class:`runyard.client.AsyncClient` (``runyard mcp`` over
  stdio, talking to a server by HTTP).

Both raise the classes of :mod:`runyard.errors` (``InvalidInput`` naming each bad
field in ``details``, ``RunNotFound``, ``WorkflowNotFound``, ``IllegalTransition``).

For the Tasks extension (``runyard.mcp.tasks``), the seam is:

* :func:`start_tool_run` is the one way a tool call starts its workflow's run (the
  arguments are the run's input, checked against its schema: ``InvalidInput`` names
  every bad field and nothing is written); the run id it returns is the task id.
* A tool named in :data:`FIXED_TOOLS` is one of the server's own; any other name is a
  workflow tool.
* ``runyard.mcp.server.build_server(port, wait_s, *, extensions=(), may_write=None)``
  returns the SDK's low-level ``mcp.server.lowlevel.Server``; ``extensions`` are
  instances of the SDK's ``mcp.server.extension.Extension`` (SEP-2133): each one's
  ``methods()`` are registered as request handlers, its ``settings()`` advertised under
  ``capabilities.extensions[identifier]``, and its ``intercept_tool_call`` wraps
  ``tools/call`` (``mcp.server.extension.compose_tool_call_handler``). The server
  refuses a workflow tool to a read-only caller before any interceptor sees the call.
  ``runyard.mcp.server.run_result(run)`` is the ``CallToolResult`` of an ended run,
  ``background_result(run)`` the one of a run still going (the background message).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..models import Run, RunStatus, Waiter
from ..rules import generate_run_id

if TYPE_CHECKING:
    from ..client import AsyncClient, RunFilters
    from ..schemas import RunOut, RunStatusOut
    from ..service import RunHandle, Service

#: The server's own tools (every other tool is a workflow); the read-only ones are
#: offered to a read-scoped API key.
FIXED_TOOLS = (
    "get_workflow_result",
    "cancel_workflow",
    "list_runs",
    "get_usage",
    "notify_event",
    "get_waiters",
)
READ_TOOLS = frozenset({"get_workflow_result", "list_runs", "get_usage", "get_waiters"})

#: The longest wait of a live-mode start (``wait_timeout`` of ``POST /v1/runs``).
LIVE_WAIT_MAX_S = 300.0

#: How often a wait re-reads a run whose progress may have changed (progress is not
#: announced, only status changes are).
PROGRESS_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A workflow that workers publish: one MCP tool."""

    name: str
    description: str | None
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunView:
    """What a tool tells of a run."""

    id: str
    workflow: str
    status: RunStatus
    progress: float | None = None
    progress_message: str | None = None
    result: Any = None
    error: Any = None
    waiting_for: str | None = None
    #: Epoch seconds (the Tasks extension's createdAt, lastUpdatedAt and ttlMs).
    created_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    #: :class:`ServicePort`'s handle of the run the view was written as: while it
    #: :meth:`~runyard.service.RunHandle.is_as_written`, the view is the run as it is,
    #: and a wait needs no first read. Not part of the run (never compared).
    written: RunHandle | None = field(default=None, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def changed_from(self, other: RunView | None) -> bool:
        """Whether status, progress or its message differ from ``other``."""
        return other is None or (self.status, self.progress, self.progress_message) != (
            other.status,
            other.progress,
            other.progress_message,
        )

    @classmethod
    def of(cls, run: Run | RunOut) -> RunView:
        return cls(
            id=run.id,
            workflow=run.workflow,
            status=RunStatus(run.status),
            progress=run.progress,
            progress_message=run.progress_message,
            result=run.result,
            error=run.error,
            waiting_for=run.waiting_for,
            created_at=_epoch(run.created_at),
            updated_at=_epoch(run.updated_at),
            finished_at=_epoch(run.finished_at),
        )


def _epoch(at: float | datetime | None) -> float | None:
    return at.timestamp() if isinstance(at, datetime) else at


@dataclass(frozen=True, slots=True)
class RunPage:
    items: list[RunView]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Credits over ``[since, until)`` (epoch seconds)."""

    since: float
    until: float
    total: float
    by_action: dict[str, float]
    by_workflow: dict[str, float]
    by_day: dict[str, float]


class RunsPort(Protocol):
    """The async operations of the MCP tools. Errors: :mod:`runyard.errors`."""

    async def workflows(self) -> list[WorkflowInfo]:
        """The workflows published by workers (latest version of each), by name."""
        ...

    async def start(
        self, workflow: str, input: Any, run_id: str | None = None, wait_s: float = 0.0
    ) -> RunView:
        """Start one run of ``workflow``, whatever retries happen underneath; a ``run_id``
        that exists answers with that run (a retried request never starts a second
        one), None: the port picks the id (before its first attempt, where it has
        several). ``InvalidInput`` names every bad field of ``input``; nothing is
        written then. ``wait_s``: the port may wait up to that long for the run to end
        where the start itself can (:class:`ClientPort`: one live-mode request instead
        of a start and a wait), so the view may be terminal."""
        ...

    async def get(self, run_id: str) -> RunView:
        """The run now; ``RunNotFound`` if there is none."""
        ...

    async def wait_change(self, run_id: str, after: RunView | None, timeout: float) -> RunView:
        """The run as soon as it differs from ``after`` (status, progress or progress
        message) or is terminal; as it is after ``timeout`` seconds otherwise."""
        ...

    async def cancel(self, run_id: str) -> RunView:
        """Cancel the run (``IllegalTransition`` if it has ended)."""
        ...

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: Sequence[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RunPage: ...

    async def usage(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        workflow: str | None = None,
    ) -> Usage: ...

    async def notify(self, event_id: str, data: Any) -> list[str]:
        """Store the event; the ids of the runs it woke."""
        ...

    async def waiters(self, event_id: str) -> list[Waiter]: ...


async def start_tool_run(
    port: RunsPort, workflow: str, input: Any, run_id: str | None = None, wait_s: float = 0.0
) -> RunView:
    """Start the run a call of workflow tool ``workflow`` asks for, with ``input`` (the
    tool's arguments, or its ``input`` argument for a workflow whose input is not an
    object: ``runyard.mcp.server.tool_input``): one run per call, whatever retries happen
    underneath (the port chooses the run id, if not given, before its first attempt)."""
    return await port.start(workflow, {} if input is None else input, run_id, wait_s)


class ServicePort:
    """:class:`RunsPort` over the in-process service (the API server's ``/mcp``)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def workflows(self) -> list[WorkflowInfo]:
        from ..jsonutil import loads

        records = await self.service.published_workflows()
        return [WorkflowInfo(r.name, r.description, loads(r.input_schema_json)) for r in records]

    async def start(
        self, workflow: str, input: Any, run_id: str | None = None, wait_s: float = 0.0
    ) -> RunView:
        from ..service import StartRequest

        # (No wait here: waiting afterwards reads nothing more, see wait_change.)
        # Without a run id the service picks one for its single transaction (in process,
        # nothing retries the request: one call, one run), and stores no request to
        # compare a repeat with (only a client-chosen id can come again).
        handle = await self.service.start_run(
            StartRequest(workflow=workflow, input=input, run_id=run_id)
        )
        initial = handle.initial
        if initial is None:
            return RunView.of(await handle.get())
        return dataclasses.replace(RunView.of(initial), written=handle)

    async def get(self, run_id: str) -> RunView:
        return RunView.of(await self.service.get_run(run_id))

    async def wait_change(self, run_id: str, after: RunView | None, timeout: float) -> RunView:
        from ..service import wait_event

        deadline = time.monotonic() + max(0.0, timeout)
        with self.service.run_changes(run_id) as ev:
            # (The run's event is registered: a change on its way sets it.)
            known = after if after is not None and after.id == run_id else None
            while True:
                ev.clear()
                written = known.written if known is not None else None
                if known is not None and written is not None and written.is_as_written():
                    run = known  # as it was written, nothing heard of it since
                else:
                    run = await self.get(run_id)
                known = None
                remaining = deadline - time.monotonic()
                if run.terminal or run.changed_from(after) or remaining <= 0:
                    return run
                await wait_event(ev, min(PROGRESS_POLL_S, remaining))

    async def cancel(self, run_id: str) -> RunView:
        await self.service.cancel(run_id)
        return await self.get(run_id)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: Sequence[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RunPage:
        page = await self.service.list_runs(
            workflow=workflow, status=list(status or []), limit=limit, cursor=cursor
        )
        return RunPage([RunView.of(r) for r in page.items], page.next_cursor)

    async def usage(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        workflow: str | None = None,
    ) -> Usage:
        report = await self.service.usage(
            since=None if since is None else since.timestamp(),
            until=None if until is None else until.timestamp(),
            workflow=workflow,
        )
        return Usage(
            report.since,
            report.until,
            report.total,
            report.by_action,
            report.by_workflow,
            report.by_day,
        )

    async def notify(self, event_id: str, data: Any) -> list[str]:
        return await self.service.notify(event_id, data)

    async def waiters(self, event_id: str) -> list[Waiter]:
        return await self.service.waiters(event_id)


class ClientPort:
    """:class:`RunsPort` over the HTTP SDK (``runyard mcp`` over stdio)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def workflows(self) -> list[WorkflowInfo]:
        return [
            WorkflowInfo(w.name, w.description, w.input_schema)
            for w in await self.client.list_workflows()
        ]

    async def start(
        self, workflow: str, input: Any, run_id: str | None = None, wait_s: float = 0.0
    ) -> RunView:
        from ..errors import CapacityExceeded
        from ..schemas import LiveRunOut

        # The id chosen here, before the first attempt: the client retries.
        run_id = run_id or generate_run_id()
        if wait_s > 0:
            # Live mode: the server answers once the run ended, or with its status at
            # the wait; one request instead of a start and a long-poll.
            try:
                answer = await self.client.start_run(
                    workflow,
                    input,
                    mode="live",
                    run_id=run_id,
                    wait_timeout=min(wait_s, LIVE_WAIT_MAX_S),
                )
            except CapacityExceeded:
                pass  # (refused before anything was written: started without the wait)
            else:
                if isinstance(answer, LiveRunOut):
                    return RunView.of(answer.run)
                return _status_view(answer, workflow)
        return RunView.of(await self.client.start_run(workflow, input, run_id=run_id))

    async def get(self, run_id: str) -> RunView:
        return RunView.of(await self.client.get_run(run_id))

    async def wait_change(self, run_id: str, after: RunView | None, timeout: float) -> RunView:
        from ..schemas import RunOut

        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            # A long poll answers at once when the run ends; its status otherwise.
            answer = await self.client.get_result(
                run_id, timeout=max(0.0, min(PROGRESS_POLL_S * 2, remaining))
            )
            if isinstance(answer, RunOut):
                return RunView.of(answer)
            run = _status_view(answer, after.workflow if after is not None else "")
            if run.terminal:  # (ended between the answer and its status: read it whole)
                return await self.get(run_id)
            if run.changed_from(after) or deadline - time.monotonic() <= 0:
                return run

    async def cancel(self, run_id: str) -> RunView:
        return RunView.of(await self.client.cancel(run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: Sequence[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RunPage:
        filters: RunFilters = {"limit": limit}
        if workflow is not None:
            filters["workflow"] = workflow
        if status:
            filters["status"] = list(status)
        page = await self.client.list_runs(cursor=cursor, **filters)
        return RunPage([RunView.of(r) for r in page.items], page.next_cursor)

    async def usage(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        workflow: str | None = None,
    ) -> Usage:
        out = await self.client.usage(since=since, until=until, workflow=workflow)
        return Usage(
            out.since.timestamp(),
            out.until.timestamp(),
            out.total,
            dict(out.by_action),
            dict(out.by_workflow),
            dict(out.by_day),
        )

    async def notify(self, event_id: str, data: Any) -> list[str]:
        return list((await self.client.notify(event_id, data)).woken)

    async def waiters(self, event_id: str) -> list[Waiter]:
        return [
            Waiter(
                event_id=event_id,
                run_id=w.run_id,
                item_idx=w.item,
                since=w.since.timestamp(),
                deadline=None if w.deadline is None else w.deadline.timestamp(),
            )
            for w in await self.client.waiters(event_id)
        ]


def _status_view(s: RunStatusOut, workflow: str) -> RunView:
    return RunView(
        id=s.id,
        workflow=workflow,
        status=RunStatus(s.status),
        progress=s.progress,
        progress_message=s.progress_message,
        waiting_for=s.waiting_for,
    )
