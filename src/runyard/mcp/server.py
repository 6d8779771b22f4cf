"""The MCP server over a :class:`~runyard.mcp.port.RunsPort`: one tool per published
workflow, and the tools that follow, resume and steer runs.

``build_server(port, wait_s, *, extensions=(), may_write=None)`` returns the SDK's
low-level :class:`mcp.server.lowlevel.Server`, which ``runyard mcp`` serves over stdio
and the API server over streamable HTTP at ``/mcp``:

* a workflow tool starts one run per call (:func:`~runyard.mcp.port.start_tool_run`)
  and follows it for up to ``wait_s`` seconds, with a progress notification when the run
  is accepted, on every change of status or progress and at least every
  :data:`KEEPALIVE_S`; past the wait it answers normally (never ``isError``) that the run
  goes on in the background and how to get its result (:func:`background_result`);
* ``get_workflow_result`` follows a run again, ``cancel_workflow``, ``list_runs``,
  ``get_usage``, ``notify_event`` and ``get_waiters`` answer as text and
  ``structuredContent`` with an output schema;
* bad arguments: ``isError`` naming every bad field, no run written;
* the tool list follows what workers publish: ``notifications/tools/list_changed`` is
  sent to the clients that listed the tools when it changes.

``extensions`` are the SDK's :class:`mcp.server.extension.Extension` objects (the Tasks
extension, ``runyard.mcp.tasks``): their methods are served, their settings advertised
under ``capabilities.extensions``, their ``intercept_tool_call`` wraps ``tools/call``.
``may_write(ctx)`` tells whether the caller may start and change runs (a read-scoped
API key may not: it sees and calls only the read tools).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import jsonschema
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.extension import Extension, compose_tool_call_handler
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .. import __version__
from ..errors import InvalidInput, RunyardError
from ..models import RunStatus
from .port import FIXED_TOOLS, READ_TOOLS, RunsPort, RunView, WorkflowInfo, start_tool_run
from .tasks import RunTasks

log = logging.getLogger("runyard.mcp")

#: A progress notification at least this often while a tool waits for a run.
KEEPALIVE_S = 5.0
#: How often the published workflows are read to notice a changed tool list.
TOOLS_POLL_S = 2.0
#: How long a read of the published workflows serves ``tools/list``.
TOOLS_TTL_S = 1.0
#: The most connections told of a changed tool list (the oldest are forgotten).
LISTENERS_MAX = 1000

Ctx = ServerRequestContext[Any, Any]
MayWrite = Callable[[Ctx], bool]

_OBJECT = {"type": "object"}
_RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "workflowId": {"type": "string", "description": "The run id"},
        "operationName": {"type": "string", "description": "The workflow"},
        "status": {"type": "string", "enum": [s.value for s in RunStatus]},
        "progress": {"type": ["number", "null"]},
        "progressMessage": {"type": ["string", "null"]},
        "result": {},
        "error": {},
        "background": {"type": "boolean"},
    },
    "required": ["workflowId", "operationName", "status"],
}


def _tool(
    name: str,
    description: str,
    properties: dict[str, Any],
    required: Sequence[str],
    output: dict[str, Any],
) -> types.Tool:
    return types.Tool(
        name=name,
        description=description,
        input_schema={
            "type": "object",
            "properties": properties,
            "required": list(required),
            "additionalProperties": False,
        },
        output_schema=output,
    )


_RUN_ID = {"type": "string", "minLength": 1, "maxLength": 200, "description": "The run id"}
_EVENT_ID = {"type": "string", "minLength": 1, "maxLength": 300, "description": "The event id"}
_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 (UTC if no zone)"}

FIXED: dict[str, types.Tool] = {
    t.name: t
    for t in (
        _tool(
            "get_workflow_result",
            "Keep listening to a workflow run started earlier and return its result; if it "
            "is still going when the wait ends, the same background message again.",
            {
                "workflowId": _RUN_ID,
                "operationName": {"type": "string", "description": "The workflow's name"},
                "waitSeconds": {
                    "type": "number",
                    "minimum": 0,
                    "description": "How long to wait for the end (at most the server's limit)",
                },
            },
            ["workflowId", "operationName"],
            _RUN_SCHEMA,
        ),
        _tool(
            "cancel_workflow",
            "Cancel a workflow run that has not ended.",
            {"workflowId": _RUN_ID},
            ["workflowId"],
            _RUN_SCHEMA,
        ),
        _tool(
            "list_runs",
            "List workflow runs, newest first, a page at a time.",
            {
                "workflow": {"type": "string"},
                "status": {
                    "description": "One status or several",
                    "anyOf": [
                        {"type": "string", "enum": [s.value for s in RunStatus]},
                        {"type": "array", "items": {"enum": [s.value for s in RunStatus]}},
                    ],
                },
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "cursor": {"type": "string", "description": "nextCursor of the page before"},
            },
            [],
            {
                "type": "object",
                "properties": {
                    "runs": {"type": "array", "items": _RUN_SCHEMA},
                    "nextCursor": {"type": ["string", "null"]},
                },
                "required": ["runs"],
            },
        ),
        _tool(
            "get_usage",
            "Credits charged by workflows over a period (default: the last 30 days), by "
            "action, workflow and day.",
            {"since": _TIME, "until": _TIME, "workflow": {"type": "string"}},
            [],
            {
                "type": "object",
                "properties": {
                    "since": {"type": "string"},
                    "until": {"type": "string"},
                    "total": {"type": "number"},
                    "byAction": {"type": "object"},
                    "byWorkflow": {"type": "object"},
                    "byDay": {"type": "object"},
                },
                "required": ["since", "until", "total"],
            },
        ),
        _tool(
            "notify_event",
            "Send an event: the runs waiting for it wake up with its data.",
            {"eventId": _EVENT_ID, "data": {"description": "Any JSON value"}},
            ["eventId"],
            {
                "type": "object",
                "properties": {
                    "eventId": {"type": "string"},
                    "woken": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["eventId", "woken"],
            },
        ),
        _tool(
            "get_waiters",
            "The runs waiting for an event.",
            {"eventId": _EVENT_ID},
            ["eventId"],
            {
                "type": "object",
                "properties": {
                    "eventId": {"type": "string"},
                    "waiters": {"type": "array", "items": {"type": "object"}},
                },
                "required": ["eventId", "waiters"],
            },
        ),
    )
}
assert tuple(FIXED) == FIXED_TOOLS

_CHECKERS = {
    name: jsonschema.Draft202012Validator(
        tool.input_schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for name, tool in FIXED.items()
}


# -- results ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _run_fields(run: RunView) -> dict[str, Any]:
    return {
        "workflowId": run.id,
        "operationName": run.workflow,
        "status": run.status.value,
        "progress": run.progress,
        "progressMessage": run.progress_message,
    }


def error_result(exc: RunyardError, *, rename_input: bool = False) -> types.CallToolResult:
    """A tool error in the one error shape; ``rename_input``: the fields of a workflow's
    input are the tool's arguments (``input.domain`` is told as ``domain``)."""
    details = exc.details
    message = exc.message
    if rename_input and isinstance(details, list):
        details = [_renamed(d) for d in details]
        if details and all(isinstance(d, dict) and "field" in d for d in details):
            message = "invalid arguments: " + "; ".join(
                f"{d['field']}: {d.get('error', 'invalid')}" for d in details
            )
    body = {"error": {"code": exc.code, "message": message, "details": details}}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=_text(body))], is_error=True
    )


def _renamed(detail: Any) -> Any:
    """A detail of a workflow's input told as the tool's argument it names."""
    if not isinstance(detail, dict) or not isinstance(detail.get("field"), str):
        return detail
    path = detail["field"]
    path = path[len("input.") :] if path.startswith("input.") else path.removeprefix("input")
    kind = detail.get("type")
    if kind in ("required", "additionalProperties"):
        path = _named(path, str(kind), str(detail.get("error", "")))
    return {**detail, "field": path or "(arguments)"}


def _named(path: str, validator: str, message: str) -> str:
    """The field a ``required`` or ``additionalProperties`` error is about (jsonschema
    tells it in the message: "'x' is a required property", "('y' was unexpected)")."""
    if validator not in ("required", "additionalProperties"):
        return path
    quoted = message.split("'")
    name = quoted[1] if len(quoted) > 2 else ""
    return ".".join(p for p in (path, name) if p)


def run_result(run: RunView) -> types.CallToolResult:
    """The tool result of an ended run: its result, or ``isError`` with its error."""
    fields = {**_run_fields(run), "result": run.result, "error": run.error}
    if run.status is RunStatus.SUCCEEDED:
        text = _text(run.result)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=fields
        )
    text = f"Workflow run {run.id} ({run.workflow}) ended {run.status.value}: {_text(run.error)}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=fields,
        is_error=True,
    )


def background_message(run: RunView) -> str:
    progress = "" if run.progress is None else f", {run.progress:.0%} done"
    said = f" ({run.progress_message})" if run.progress_message else ""
    args = _text({"workflowId": run.id, "operationName": run.workflow})
    return (
        f"Workflow run {run.id} of {run.workflow!r} is {run.status.value}{progress}{said}. "
        "It continues in the background: do NOT call the "
        f"{run.workflow!r} tool again for this request (that would start a second run). "
        f"To get its result, call the get_workflow_result tool with {args}."
    )


def background_result(run: RunView) -> types.CallToolResult:
    """The tool result of a run still going at the wait limit (never ``isError``)."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=background_message(run))],
        structured_content={**_run_fields(run), "background": True},
    )


def _progress_text(run: RunView) -> str:
    pct = "" if run.progress is None else f" {run.progress:.0%}"
    said = f": {run.progress_message}" if run.progress_message else ""
    return f"run {run.id} {run.status.value}{pct}{said}"


async def follow(port: RunsPort, ctx: Ctx, run: RunView, wait_s: float) -> types.CallToolResult:
    """Follow ``run`` for up to ``wait_s`` seconds, reporting progress: its result once it
    ends, the background message otherwise. Cancelling this (the client gave up) leaves
    the run going."""
    deadline = time.monotonic() + max(0.0, wait_s)
    sent = 0

    async def report(view: RunView) -> None:
        nonlocal sent
        sent += 1
        with contextlib.suppress(Exception):  # a client gone does not stop the wait
            await ctx.session.report_progress(sent, None, _progress_text(view))

    await report(run)
    last_sent = time.monotonic()
    while not run.terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return background_result(run)
        step = min(remaining, max(0.05, KEEPALIVE_S - (time.monotonic() - last_sent)))
        now = await port.wait_change(run.id, run, step)
        changed = now.changed_from(run)
        run = now
        if changed or time.monotonic() - last_sent >= KEEPALIVE_S - 0.05:
            await report(run)
            last_sent = time.monotonic()
    return run_result(run)


# -- the server ------------------------------------------------------------------------


class _Catalog:
    """The published workflows as tools, read at most every :data:`TOOLS_TTL_S`, and the
    connections to tell when they change."""

    def __init__(self, port: RunsPort) -> None:
        self.port = port
        self._read_at = -TOOLS_TTL_S
        self._workflows: dict[str, WorkflowInfo] = {}
        self._lock = asyncio.Lock()
        self.listeners: dict[int, Any] = {}
        #: Clients of the 2026-07-28 revision hear of changes on ``subscriptions/listen``.
        self.bus = InMemorySubscriptionBus()

    async def workflows(self, fresh: bool = False) -> dict[str, WorkflowInfo]:
        async with self._lock:
            if fresh or time.monotonic() - self._read_at >= TOOLS_TTL_S:
                found = await self.port.workflows()
                self._workflows = {w.name: w for w in found if w.name not in FIXED}
                self._read_at = time.monotonic()
            return self._workflows

    def known(self) -> dict[str, WorkflowInfo]:
        """The published workflows as last read (no read)."""
        return self._workflows

    def listen(self, ctx: Ctx) -> None:
        session = ctx.session
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return  # (told through subscriptions/listen)
        # One entry per connection (the session object is made per request).
        key = id(getattr(session, "_connection", session))
        self.listeners.pop(key, None)
        self.listeners[key] = session
        while len(self.listeners) > LISTENERS_MAX:
            self.listeners.pop(next(iter(self.listeners)))

    async def watch(self) -> None:
        """Tell every listener when the published workflows change."""
        known: object = None
        while True:
            try:
                found = await self.workflows(fresh=True)
                shape = sorted(
                    (w.name, w.description, _text(w.input_schema)) for w in found.values()
                )
                if known is not None and shape != known:
                    await self.bus.publish(ToolsListChanged())
                    # Clients of the handshake revisions: on their connection.
                    for key, session in list(self.listeners.items()):
                        try:
                            await session.send_tool_list_changed()
                        except Exception:
                            self.listeners.pop(key, None)
                known = shape
            except RunyardError as exc:
                log.debug("reading the workflows for the tool list: %s", exc)
            await asyncio.sleep(TOOLS_POLL_S)


def workflow_tool(w: WorkflowInfo) -> types.Tool:
    """The tool of workflow ``w``: its input schema (a non-object input is the tool's
    ``input`` argument) and its docstring."""
    return types.Tool(
        name=w.name,
        description=(w.description or f"Run the {w.name} workflow.")
        + " Long runs continue in the background: follow them with get_workflow_result.",
        input_schema=_tool_schema(w),
    )


def _tool_schema(w: WorkflowInfo) -> dict[str, Any]:
    return w.input_schema if _is_object(w.input_schema) else _wrapped(w.input_schema)


def _is_object(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "object"


def _wrapped(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"input": dict(schema)}, "required": ["input"]}


def tool_input(w: WorkflowInfo, arguments: Mapping[str, Any] | None) -> Any:
    """The run's input of a call of ``w``'s tool."""
    args = dict(arguments or {})
    if _is_object(w.input_schema):
        return args
    if set(args) - {"input"}:
        extra = sorted(set(args) - {"input"})
        raise InvalidInput(
            f"unknown arguments: {', '.join(extra)} (this tool takes 'input')",
            details=[{"field": a, "error": "unknown argument"} for a in extra],
        )
    return args.get("input")


class RunyardServer(Server[Any]):
    """The SDK's low-level server, advertising that its tool list changes."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def build_server(
    port: RunsPort,
    wait_s: float,
    *,
    extensions: Sequence[Extension] = (),
    may_write: MayWrite | None = None,
    retention_s: float | None = None,
) -> RunyardServer:
    """The MCP server of ``port``'s workflows; a tool call waits for a run up to
    ``wait_s`` seconds. It speaks the Tasks extension (:class:`~runyard.mcp.tasks.RunTasks`:
    a declaring client's workflow tool answers with a task whose id is the run id; ended
    runs are kept ``retention_s`` seconds, None: for ever) besides ``extensions``. See
    the module's docstring."""
    tasks = RunTasks(
        port,
        tool_result=run_result,
        tool_input=tool_input,
        may_write=may_write,
        retention_s=retention_s,
    )
    extensions = [tasks, *extensions]
    catalog = _Catalog(port)

    def writer(ctx: Ctx) -> bool:
        return may_write is None or may_write(ctx)

    async def list_tools(
        ctx: Ctx, _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        catalog.listen(ctx)
        if not writer(ctx):
            return types.ListToolsResult(tools=[t for n, t in FIXED.items() if n in READ_TOOLS])
        found = await catalog.workflows()
        tools = [workflow_tool(w) for w in sorted(found.values(), key=lambda w: w.name)]
        return types.ListToolsResult(tools=[*tools, *FIXED.values()])

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        name = params.name
        try:
            if name in FIXED:
                return await _fixed(port, ctx, name, params.arguments or {}, wait_s)
            found = await catalog.workflows()
            w = found.get(name) or (await catalog.workflows(fresh=True)).get(name)
            if w is None:
                known = ", ".join(sorted([*found, *FIXED])) or "none"
                raise InvalidInput(
                    f"unknown tool {name!r} (tools: {known})",
                    details=[{"field": "name", "error": "unknown tool"}],
                )
            # Without a progress token nothing is told before the end: the port may
            # wait for the run as it starts it.
            started = time.monotonic()
            first_wait = wait_s if not _wants_progress(ctx) else 0.0
            try:
                run = await start_tool_run(
                    port, name, tool_input(w, params.arguments), wait_s=first_wait
                )
            except InvalidInput as exc:
                return error_result(exc, rename_input=_is_object(w.input_schema))
            return await follow(port, ctx, run, wait_s - (time.monotonic() - started))
        except RunyardError as exc:
            return error_result(exc)

    def input_schema(name: str) -> Mapping[str, Any] | None:
        """A tool's input schema, for the SDK's check of a ``tools/call``'s
        ``Mcp-Param-*`` headers (without it the SDK runs ``list_tools`` on every call):
        the workflows as last read, which a client that listed the tool saw; a tool
        not read yet is not checked (the SDK's own answer when the listing lacks it)."""
        tool = FIXED.get(name)
        if tool is not None:
            return tool.input_schema
        w = catalog.known().get(name)
        return None if w is None else _tool_schema(w)

    async def guarded(ctx: Ctx, params: types.CallToolRequestParams) -> Any:
        if params.name not in READ_TOOLS and not writer(ctx):
            return _forbidden(params.name)
        return await handler(ctx, params)

    @contextlib.asynccontextmanager
    async def lifespan(_server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        watcher = asyncio.create_task(catalog.watch(), name="runyard-mcp-tools")
        try:
            yield {}
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    server = RunyardServer(
        "runyard",
        version=__version__,
        instructions=(
            "Runyard runs durable workflows. Each workflow is a tool; a long run continues "
            "in the background after the tool answers: then call get_workflow_result with "
            "the workflowId and operationName it gives, never the workflow's tool again."
        ),
        lifespan=lifespan,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=ListenHandler(catalog.bus),
    )
    handler = compose_tool_call_handler(list(extensions), call_tool)
    server.add_request_handler("tools/call", types.CallToolRequestParams, guarded)
    for extension in extensions:
        for method in extension.methods():
            server.add_request_handler(method.method, method.params_type, method.handler)
        server.extensions[extension.identifier] = extension.settings()
    return server


def _wants_progress(ctx: Ctx) -> bool:
    """Whether the request asked for progress notifications (a progress token)."""
    return ctx.meta is not None and ctx.meta.get("progress_token") is not None


def _forbidden(name: str) -> types.CallToolResult:
    body = {
        "error": {
            "code": "forbidden",
            "message": f"this API key may only read: {name!r} needs the 'write' scope",
            "details": {"needed": "write"},
        }
    }
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=_text(body))], is_error=True
    )


def _invalid(name: str, arguments: Mapping[str, Any]) -> InvalidInput | None:
    errors = sorted(_CHECKERS[name].iter_errors(dict(arguments)), key=lambda e: e.json_path)
    if not errors:
        return None
    details = []
    for e in errors:
        path = ".".join(str(p) for p in e.absolute_path)
        field = _named(path, str(e.validator), e.message) or "(arguments)"
        details.append({"field": field, "error": e.message})
    return InvalidInput(
        f"invalid arguments for {name}: "
        + "; ".join(f"{d['field']}: {d['error']}" for d in details),
        details=details,
    )


def _when(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO 8601 time, such as 2026-01-31T12:00:00Z",
            details=[{"field": field, "error": "not an ISO 8601 time"}],
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def _fixed(
    port: RunsPort, ctx: Ctx, name: str, args: Mapping[str, Any], wait_s: float
) -> types.CallToolResult:
    bad = _invalid(name, args)
    if bad is not None:
        return error_result(bad)
    if name == "get_workflow_result":
        run = await port.get(args["workflowId"])
        if run.workflow != args["operationName"]:
            raise InvalidInput(
                f"run {run.id} is a run of {run.workflow!r}, not {args['operationName']!r}",
                details=[{"field": "operationName", "error": f"expected {run.workflow!r}"}],
            )
        wait = wait_s if args.get("waitSeconds") is None else min(wait_s, args["waitSeconds"])
        return await follow(port, ctx, run, wait)
    if name == "cancel_workflow":
        run = await port.cancel(args["workflowId"])
        fields = _run_fields(run)
        return _structured(f"Workflow run {run.id} is {run.status.value}.", fields)
    if name == "list_runs":
        status = args.get("status")
        page = await port.list_runs(
            workflow=args.get("workflow"),
            status=[status] if isinstance(status, str) else status,
            limit=args.get("limit", 20),
            cursor=args.get("cursor"),
        )
        runs = [_run_fields(r) for r in page.items]
        return _structured(None, {"runs": runs, "nextCursor": page.next_cursor})
    if name == "get_usage":
        usage = await port.usage(
            since=_when(args.get("since"), "since"),
            until=_when(args.get("until"), "until"),
            workflow=args.get("workflow"),
        )
        return _structured(
            None,
            {
                "since": datetime.fromtimestamp(usage.since, UTC).isoformat(),
                "until": datetime.fromtimestamp(usage.until, UTC).isoformat(),
                "total": usage.total,
                "byAction": usage.by_action,
                "byWorkflow": usage.by_workflow,
                "byDay": usage.by_day,
            },
        )
    if name == "notify_event":
        woken = await port.notify(args["eventId"], args.get("data"))
        return _structured(None, {"eventId": args["eventId"], "woken": woken})
    waiters = await port.waiters(args["eventId"])

    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

    return _structured(
        None,
        {
            "eventId": args["eventId"],
            "waiters": [
                {
                    "runId": w.run_id,
                    "item": w.item_idx,
                    "since": iso(w.since),
                    "deadline": iso(w.deadline),
                }
                for w in waiters
            ],
        },
    )


def _structured(text: str | None, value: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text or _text(value))],
        structured_content=value,
    )
