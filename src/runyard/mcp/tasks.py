"""The MCP Tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663, revision
2026-07-28) over Runyard runs.

A client that declares the extension on a ``tools/call`` of a workflow tool gets a
task at once instead of a result: the run is started (durably: a ``tasks/get`` for it
answers before the ``CreateTaskResult`` leaves) and the task id *is* the run id. Then

* ``tasks/get`` tells the run: ``working`` while it is scheduled, queued, running or
  paused (``statusMessage`` from its progress), ``completed`` once it ended with the
  ``CallToolResult`` the tool would have returned (``isError`` for a failed run: SEP-2663
  keeps ``failed`` for JSON-RPC errors), ``cancelled`` once cancelled;
* ``tasks/cancel`` cancels the run (an ended run stays as it is: cancellation is
  cooperative, the answer is an empty acknowledgement either way);
* ``tasks/update`` acknowledges: a run never asks its client for input, so no
  ``inputRequests`` key is ever outstanding and every ``inputResponses`` entry is
  ignored, as the SEP says a server should.

``ttlMs`` is null while the run has not ended (it is never purged then), afterwards the
time from its creation to its purge (``RUNYARD_RETENTION_DAYS`` after its end);
``pollIntervalMs`` is the suggested polling interval while it has not ended.

The SDK has no tasks runtime: this is an :class:`mcp.server.extension.Extension` (a
``tools/call`` interceptor and three method bindings), with no state of its own: the
runs are the tasks. Nothing here cancels a run because a request was cancelled (on
streamable HTTP a closed response stream cancels the request's handler): only
``tasks/cancel`` (and the ``cancel_workflow`` tool) do. The run's start is shielded, so
a stream closed while it is written cannot leave it half done.

A client that does not declare the extension (or speaks a revision before 2026-07-28,
where the extension is not defined) gets the tool's normal behaviour; its ``tasks/*``
requests are refused with ``-32021`` (missing required client capability).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, CallToolResult, RequestParams, Result
from mcp_types.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND
from pydantic import Field

from ..errors import IllegalTransition, InvalidInput, RunNotFound, WorkflowNotFound
from ..models import RunStatus
from ..rules import generate_run_id
from .port import FIXED_TOOLS, RunsPort, RunView, WorkflowInfo, start_tool_run

#: The extension's identifier, advertised in the server's capabilities and declared by
#: clients in each request's capabilities.
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
#: The revisions the extension is defined for (SEP-2663: not under 2025-11-25).
TASKS_PROTOCOL_VERSIONS = frozenset({"2026-07-28"})
#: The polling interval suggested to clients while a run has not ended.
DEFAULT_POLL_INTERVAL_MS = 1000
#: A task id is a run id; no run id is longer (``rules.RUN_ID`` allows far less).
TASK_ID_MAX = 200

_WORKING_WORDS: dict[RunStatus, str] = {
    RunStatus.SCHEDULED: "scheduled: it starts at its time",
    RunStatus.QUEUED: "queued: waiting for a worker",
    RunStatus.RUNNING: "running",
    RunStatus.PAUSED: "paused: it goes on once resumed",
}
_SUCCESS = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL_SUCCEEDED})

ToolResult = Callable[[RunView], CallToolResult]
ToolInput = Callable[[WorkflowInfo, dict[str, Any] | None], Any]
MayWrite = Callable[[ServerRequestContext[Any, Any]], bool]


class TaskParams(RequestParams):
    """``tasks/get`` and ``tasks/cancel``: the task (run) id."""

    task_id: str = Field(min_length=1, max_length=TASK_ID_MAX)


class UpdateTaskParams(TaskParams):
    """``tasks/update``: responses to outstanding ``inputRequests`` (there never are)."""

    input_responses: dict[str, Any] = Field(default_factory=dict)


class TaskAck(Result):
    """The empty acknowledgement of ``tasks/update`` and ``tasks/cancel``."""


def declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client declared the extension, on a revision that has it."""
    if ctx.protocol_version not in TASKS_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    declared = capabilities.extensions if capabilities is not None else None
    return bool(declared) and TASKS_EXTENSION in (declared or {})


def _require(ctx: ServerRequestContext[Any, Any]) -> None:
    """Refuse a ``tasks/*`` request on a revision without the extension (as an unknown
    method) or from a client that did not declare it (``-32021``)."""
    if ctx.protocol_version not in TASKS_PROTOCOL_VERSIONS:
        raise MCPError(METHOD_NOT_FOUND, f"Method not found: {ctx.method}")
    require_client_extension(ctx, TASKS_EXTENSION)


def iso(ts: float) -> str:
    """An epoch time as ISO 8601 in UTC (milliseconds, ``Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_message(run: RunView) -> str:
    """What the run is doing, in words: its status, progress and progress message."""
    if run.status is RunStatus.CANCELED:
        return f"the run {run.id} was cancelled"
    if run.status in _SUCCESS:
        return f"the run {run.id} {run.status.value.lower().replace('_', ' ')}"
    if run.terminal:
        return f"the run {run.id} ended {run.status.value}" + _error_text(run.error)
    words = _WORKING_WORDS.get(run.status, run.status.value.lower())
    if run.waiting_for and run.status is RunStatus.RUNNING:
        words = f"waiting for the event {run.waiting_for}"
    if run.progress is not None:
        words += f", {round(run.progress * 100)}%"
    if run.progress_message:
        words += f": {run.progress_message}"
    return words


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return f": {message}"
    if isinstance(error, str) and error:
        return f": {error}"
    return ""


def task_status(status: RunStatus) -> str:
    """The task status of a run status."""
    if status is RunStatus.CANCELED:
        return "cancelled"
    return "completed" if status.terminal else "working"


def ttl_ms(run: RunView, retention_s: float | None) -> int | None:
    """Milliseconds from the run's creation to its purge; None (unlimited) while it has
    not ended, or when nothing purges it."""
    if retention_s is None or not run.terminal or run.finished_at is None:
        return None
    created = run.created_at if run.created_at is not None else run.finished_at
    return max(0, round((run.finished_at + retention_s - created) * 1000))


class RunTasks(Extension):
    """The Tasks extension over the runs of ``port``.

    ``may_write`` tells whether the request may cancel runs (a read-scoped API key may
    not; the server refuses it the workflow tools before this extension sees them);
    ``retention_s`` how long ended runs are kept (None: for ever); ``tool_result``
    shapes an ended run as the ``CallToolResult`` its tool returns and ``tool_input``
    a tool's arguments as its run's input (``runyard.mcp.server``'s ``run_result`` and
    ``tool_input``: the same as without the extension).
    """

    identifier = TASKS_EXTENSION

    def __init__(
        self,
        port: RunsPort,
        *,
        tool_result: ToolResult,
        tool_input: ToolInput,
        may_write: MayWrite | None = None,
        retention_s: float | None = None,
        poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
    ) -> None:
        self.port = port
        self.tool_result = tool_result
        self.tool_input = tool_input
        self.may_write = may_write
        self.retention_s = retention_s
        self.poll_interval_ms = poll_interval_ms

    def methods(self) -> Sequence[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self.get, TASKS_PROTOCOL_VERSIONS),
            MethodBinding("tasks/update", UpdateTaskParams, self.update, TASKS_PROTOCOL_VERSIONS),
            MethodBinding("tasks/cancel", TaskParams, self.cancel, TASKS_PROTOCOL_VERSIONS),
        ]

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        """A workflow tool called by a client declaring the extension answers with a
        task; anything else goes on to the tool."""
        if params.name in FIXED_TOOLS or not declares_tasks(ctx) or not self._writes(ctx):
            return await call_next(ctx)
        workflow = next((w for w in await self.port.workflows() if w.name == params.name), None)
        if workflow is None:
            return await call_next(ctx)  # an unknown tool: the tool's own error
        run_id = generate_run_id()
        try:
            # Shielded: a closed stream must not leave the start half done (the run
            # id is chosen once, so a retry inside never starts a second run).
            with anyio.CancelScope(shield=True):
                run_input = self.tool_input(workflow, params.arguments)
                run = await start_tool_run(self.port, params.name, run_input, run_id)
        except (InvalidInput, WorkflowNotFound):
            # Nothing was written: the tool itself answers with its usual error.
            return await call_next(ctx)
        return {"resultType": "task", **self.task(run, details=False)}

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        """``tasks/get``: the task as the run is now."""
        _require(ctx)
        return self.task(await self._run(params.task_id), details=True)

    async def update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> HandlerResult:
        """``tasks/update``: an acknowledgement for a known run (no input is ever
        outstanding, so the responses are ignored)."""
        _require(ctx)
        await self._run(params.task_id)
        return TaskAck()

    async def cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> HandlerResult:
        """``tasks/cancel``: cancel the run; an ended run is left as it is."""
        _require(ctx)
        run = await self._run(params.task_id)
        if not self._writes(ctx):
            raise MCPError(
                INVALID_PARAMS,
                f"this API key may not cancel the run {run.id}: it needs the write scope",
                {"taskId": run.id},
            )
        if not run.terminal:
            # Ended meanwhile: cancellation is cooperative, the ack stands.
            with contextlib.suppress(IllegalTransition):
                await self.port.cancel(run.id)
        return TaskAck()

    def task(self, run: RunView, *, details: bool) -> dict[str, Any]:
        """The ``Task`` of ``run`` (with its result once completed when ``details``)."""
        status = task_status(run.status)
        now = time.time()
        task: dict[str, Any] = {
            "taskId": run.id,
            "status": status,
            "statusMessage": status_message(run),
            "createdAt": iso(run.created_at if run.created_at is not None else now),
            "lastUpdatedAt": iso(run.updated_at if run.updated_at is not None else now),
            "ttlMs": ttl_ms(run, self.retention_s),
        }
        if not run.terminal:
            task["pollIntervalMs"] = self.poll_interval_ms
        if details and status == "completed":
            task["result"] = self.tool_result(run).model_dump(
                by_alias=True, mode="json", exclude_none=True
            )
        return task

    async def _run(self, task_id: str) -> RunView:
        try:
            return await self.port.get(task_id)
        except (RunNotFound, InvalidInput):
            raise MCPError(
                INVALID_PARAMS,
                f"taskId: no task {task_id!r} (a task id is a run id; no run has this one)",
                {"taskId": task_id},
            ) from None

    def _writes(self, ctx: ServerRequestContext[Any, Any]) -> bool:
        return self.may_write is None or self.may_write(ctx)
