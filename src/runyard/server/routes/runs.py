"""``/v1/runs``: start, list, read, wait for, stream and steer runs."""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BeforeValidator

from ...errors import InvalidInput
from ...http_target import HTTP_WORKFLOW, target_problems
from ...models import ItemState, LogLine, Output, RunStatus
from ...rules import invalid, problems_error
from ...schemas import (
    BulkCancel,
    Canceled,
    ForkIn,
    InputList,
    InputOut,
    LiveRunOut,
    LogOut,
    LogPage,
    OutputOut,
    OutputPage,
    QueueItemOut,
    QueuePage,
    RunCreate,
    RunOut,
    RunPage,
    RunStatusOut,
    StepList,
    TransitionList,
    TransitionOut,
)
from ...service import request_from_options
from ..auth import ApiRoute, principal_of
from ..errors import error_responses, start_outcome
from ..live import start_and_answer, wait_terminal
from ..sse import run_event_stream
from ..state import ServerState, State
from ..wire import TimeQuery, bound, epoch, json_response, run_location
from .common import CONFLICT, NOT_FOUND, RunId, paginated, set_next

router = APIRouter(prefix="/v1", tags=["runs"], route_class=ApiRoute)

R = TypeVar("R", Output, LogLine)

#: Largest queue offset: the active view merges two ordered reads of offset + limit rows.
MAX_QUEUE_OFFSET = 100_000

_RUN_ANSWERS: dict[int | str, dict[str, Any]] = {
    201: {"model": RunOut, "description": "Created (async mode)"},
    200: {
        "model": RunOut | LiveRunOut,
        "description": "Live mode: the finished run and the first page of its outputs "
        "(`X-Pagination-Next` when there are more). Async mode: the run that already had "
        "this `run_id` (nothing started twice)",
        "headers": {
            "X-Pagination-Next": {
                "description": "Cursor of the next page of outputs",
                "schema": {"type": "string"},
            }
        },
    },
    202: {
        "model": RunStatusOut,
        "description": "Live mode: still going after `wait_timeout`; poll or long-poll it",
    },
    **error_responses([404, 429]),
}


#: One event of the stream (in OpenAPI 3.1 the schema of an event stream describes each
#: event); ``data`` is JSON: RunStatusOut, {progress, message}, OutputOut, RunOut, or
#: ErrorBody for ``error``.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["status", "progress", "output", "end", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "description": "The output id (output events)"},
        "retry": {"type": "integer"},
    },
}


# -- starting and listing --------------------------------------------------------------


@router.post(
    "/runs",
    status_code=201,
    response_model=None,
    responses=_RUN_ANSWERS,
    summary="Start a run (async or live)",
)
async def create_run(body: RunCreate, request: Request, state: State) -> JSONResponse:
    """Start a run of a published workflow. ``mode: "live"`` waits up to ``wait_timeout``
    seconds (default 30, ``RUNYARD_LIVE_WAIT_S``) for the result; ``timeout`` is the run's
    own timeout."""
    return await start_run(state, request, body)


#: The fields of a trigger body that :func:`target_problems` checks.
_TARGET_FIELDS = {"workflow", "url", "input", "inputs"}


async def start_run(state: ServerState, request: Request, body: RunCreate) -> JSONResponse:
    """What ``POST /v1/runs`` does once the caller and the body are checked (also called
    by the server's direct path for this route, :mod:`runyard.server.fastpath`); the
    engine checks ``task_id``."""
    if problems := target_problems(body.model_dump(include=_TARGET_FIELDS)):
        raise problems_error(problems)  # (the body check names them first over HTTP)
    workflow = body.workflow if body.url is None else HTTP_WORKFLOW
    assert workflow is not None  # (target_problems: one of the two)
    req = request_from_options(
        workflow,
        body,
        input=body.input if body.url is None else body.url.model_dump(),
        inputs=body.inputs,
        custom_data=body.custom_data,
        run_id=body.run_id,
        mode=body.mode,
        version=body.version,
        delay=body.delay,
        not_before=epoch(body.not_before, "not_before", "body"),
        task_id=body.task_id,
    )
    if body.callback is not None:
        req = dataclasses.replace(req, callback=body.callback.model_dump())
    with start_outcome(body.run_id):  # a 503 says how to learn whether it was created
        return await start_and_answer(state, request, req, body.wait_timeout)


#: A status filter in any case (``succeeded`` as ``SUCCEEDED``), as the CLI takes it.
AnyCaseStatus = Annotated[
    RunStatus, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)
]
#: The deepest page ``page``/``page_size`` reach (rows skipped): each page walks the
#: list from its start, so deeper paging is by cursor.
MAX_PAGE_OFFSET = 10_000


@router.get("/runs", response_model=RunPage, responses=paginated(RunPage), summary="List runs")
async def list_runs(
    state: State,
    response: Response,
    workflow: Annotated[str | None, Query(max_length=128)] = None,
    task_id: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[
        list[AnyCaseStatus] | None,
        Query(description="Repeat for several; any case (`succeeded` is `SUCCEEDED`)"),
    ] = None,
    mode: Annotated[str | None, Query(max_length=32)] = None,
    schedule_id: Annotated[str | None, Query(max_length=200)] = None,
    created_after: TimeQuery = None,
    created_before: TimeQuery = None,
    cursor: Annotated[
        str | None, Query(max_length=500, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PAGE_OFFSET,
            description="Page number (from 1), instead of `cursor`; pages hold `page_size` "
            f"runs and reach at most {MAX_PAGE_OFFSET} runs deep",
        ),
    ] = None,
    page_size: Annotated[
        int | None, Query(ge=1, le=100, description="Runs per page with `page` (else `limit`)")
    ] = None,
    sort: Annotated[
        Literal["created_at", "started_at", "finished_at", "status"],
        Query(
            description="What the list is ordered by (then by creation time and id); a "
            "time not yet set (a run not started or not finished) sorts last ascending, "
            "first descending. Only `created_at` walks an index: the other sorts read "
            "every run that passes the filters"
        ),
    ] = "created_at",
    order: Literal["asc", "desc"] = "desc",
) -> RunPage:
    """Newest first by default; follow ``next_cursor`` (also in ``X-Pagination-Next``),
    or ask for ``page``/``page_size``. A run created while you page by cursor never makes
    a later page repeat or skip one."""
    size = page_size or limit
    if page_size is not None and page is None:
        raise invalid(
            "page_size", "page_size goes with page (use limit with cursor)", "without page"
        )
    if page is not None and cursor is not None:
        raise invalid("page", "give page or cursor, not both", "both page and cursor")
    if page is not None and (page - 1) * size > MAX_PAGE_OFFSET:
        raise invalid(
            "page",
            f"page {page} of {size} is deeper than {MAX_PAGE_OFFSET} runs: page by cursor",
            "too deep",
        )
    query = functools.partial(
        state.service.list_runs,
        workflow=workflow,
        status=[s.value for s in status] if status else None,
        task_id=task_id,
        schedule_id=schedule_id,
        mode=mode,
        created_after=bound(created_after, "created_after"),
        created_before=bound(created_before, "created_before"),
        order=order,
        sort=sort,
    )
    skip = (page - 1) * size if page is not None else 0
    while skip > 0:  # walk to the page asked for, a hundred runs at a time
        passed = await query(cursor=cursor, limit=min(skip, 100))
        skip -= len(passed.items)
        cursor = passed.next_cursor
        if cursor is None:
            set_next(response, None)
            return RunPage(items=[], next_cursor=None)
    result = await query(cursor=cursor, limit=size)
    set_next(response, result.next_cursor)
    return RunPage(items=[RunOut.of(r) for r in result.items], next_cursor=result.next_cursor)


@router.post(
    "/runs/cancel",
    response_model=Canceled,
    summary="Cancel many runs",
)
async def cancel_many(body: BulkCancel, request: Request, state: State) -> Canceled:
    """Cancel the non-terminal runs selected by ``ids``, ``workflow``, ``prefix`` and
    ``url_prefix`` (HTTP-target runs whose URL starts with it); all given selectors must
    match. ``all: true`` needs the admin scope."""
    if body.all:
        principal_of(request).require("admin")
    ids = await state.service.cancel(
        ids=body.ids,
        workflow=body.workflow,
        prefix=body.prefix,
        url_prefix=body.url_prefix,
        all=body.all,
    )
    return Canceled(canceled=ids)


# -- one run ----------------------------------------------------------------------------


@router.get("/runs/{run_id}", response_model=RunOut, responses=NOT_FOUND, summary="Get a run")
async def get_run(run_id: RunId, state: State) -> RunOut:
    return RunOut.of(await state.service.get_run(run_id))


@router.get(
    "/runs/{run_id}/status",
    response_model=RunStatusOut,
    responses=NOT_FOUND,
    summary="A run's status (lightweight, for polling)",
)
async def get_status(run_id: RunId, state: State) -> RunStatusOut:
    return RunStatusOut.of(await state.service.get_run(run_id))


@router.get(
    "/runs/{run_id}/result",
    response_model=RunOut,
    responses={
        200: {"model": RunOut, "description": "The run is terminal"},
        202: {"model": RunStatusOut, "description": "Still going after `timeout` seconds"},
        **error_responses([404, 429]),
    },
    summary="Wait for a run's result (long-poll)",
)
async def get_result(
    run_id: RunId,
    request: Request,
    state: State,
    timeout: Annotated[
        float,
        Query(
            ge=0, le=300, allow_inf_nan=False, description="Seconds to wait for the run to finish"
        ),
    ] = 0,
) -> JSONResponse:
    """Answers the moment the run finishes (woken, not polled), or 202 after ``timeout``."""
    if timeout > 0:
        with state.live.slot():
            run = await wait_terminal(state, request, run_id, timeout)
    else:
        run = await wait_terminal(state, request, run_id, 0)
    if run is None:
        current = await state.service.get_run(run_id)
        return json_response(RunStatusOut.of(current), 202, run_location(run_id))
    return json_response(RunOut.of(run), 200)


@router.get(
    "/runs/{run_id}/inputs",
    response_model=InputList,
    responses=NOT_FOUND,
    summary="Each input's state, result and error",
)
async def get_inputs(run_id: RunId, state: State) -> InputList:
    run = await state.service.get_run(run_id)
    items = await state.service.items(run_id, kinds=("input",), limit=max(1, run.input_count))
    return InputList(items=[InputOut.of(i) for i in items])


@router.get(
    "/runs/{run_id}/outputs",
    response_model=OutputPage,
    responses={**paginated(OutputPage), **NOT_FOUND},
    summary="Page through a run's outputs",
)
async def get_outputs(
    run_id: RunId,
    state: State,
    response: Response,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="The last output id seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OutputPage:
    """Outputs in the order they were emitted, each once; ``next_cursor`` until the end."""
    outputs = await state.service.outputs(run_id, after=int(cursor or 0), limit=limit + 1)
    outputs, nxt = _page(outputs, limit, response)
    return OutputPage(items=[OutputOut.of(o) for o in outputs], next_cursor=nxt)


def _page(rows: list[R], limit: int, response: Response) -> tuple[list[R], str | None]:
    """The first ``limit`` of ``rows`` (read with one more, to know whether a next page
    exists) and the next page's cursor, the last id given, also set in the header."""
    nxt = str(rows[limit - 1].id) if len(rows) > limit else None
    set_next(response, nxt)
    return rows[:limit], nxt


@router.get(
    "/runs/{run_id}/logs",
    response_model=LogPage,
    responses={**paginated(LogPage), **NOT_FOUND},
    summary="Page through a run's log lines",
)
async def get_logs(
    run_id: RunId,
    state: State,
    response: Response,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="The last log line id seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LogPage:
    """What the workflow logged through ``ctx.logger``, in the order it was written, with
    the item, iteration and attempt that wrote each line; ``next_cursor`` until the end."""
    lines = await state.service.logs(run_id, after=after, limit=limit + 1)
    lines, nxt = _page(lines, limit, response)
    return LogPage(items=[LogOut.of(line) for line in lines], next_cursor=nxt)


@router.get(
    "/runs/{run_id}/queue",
    response_model=QueuePage,
    responses=NOT_FOUND,
    summary="A run's items (inputs and fanned-out elements)",
)
async def get_queue(
    run_id: RunId,
    state: State,
    offset: Annotated[int, Query(ge=0, le=MAX_QUEUE_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    item_state: Annotated[ItemState | None, Query(alias="state")] = None,
    include_history: bool = False,
) -> QueuePage:
    """Without ``include_history`` (or a ``state``) only the items still to do: queued
    and processing."""
    items = await state.service.queue(
        run_id, state=item_state, include_history=include_history, offset=offset, limit=limit
    )
    return QueuePage(items=[QueueItemOut.of(i) for i in items], offset=offset, limit=limit)


@router.get(
    "/runs/{run_id}/steps",
    response_model=StepList,
    responses=NOT_FOUND,
    summary="The step log: names, attempts, times, errors",
)
async def get_steps(run_id: RunId, state: State) -> StepList:
    return StepList(items=await state.service.step_log(run_id))


@router.get(
    "/runs/{run_id}/transitions",
    response_model=TransitionList,
    responses=NOT_FOUND,
    summary="Every status change of a run, with its time",
)
async def get_transitions(run_id: RunId, state: State) -> TransitionList:
    transitions = await state.service.transitions(run_id)
    return TransitionList(items=[TransitionOut.of(t) for t in transitions])


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `status`, `progress` and `output` as they "
            "happen, `end` (the run) once it is terminal; comment pings in between. "
            "Reconnect with `Last-Event-ID` to resume outputs after that id.",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        },
        **NOT_FOUND,
    },
    summary="Stream a run's changes (Server-Sent Events)",
)
async def get_events(
    run_id: RunId,
    request: Request,
    state: State,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=32,
            pattern=r"^[0-9]*$",
            description="The id of the last output event received: the stream resumes after it",
        ),
    ] = None,
) -> StreamingResponse:
    if last_event_id and not (last_event_id.isascii() and last_event_id.isdigit()):
        # (isdigit alone takes "²", which int() refuses)
        raise InvalidInput(
            "Last-Event-ID must be the id of an output event of this stream",
            details=[{"field": "last-event-id", "in": "header", "error": "not an output id"}],
        )
    run = await state.service.get_run(run_id)  # 404 before the stream starts
    after = int(last_event_id) if last_event_id else 0
    return StreamingResponse(
        run_event_stream(state, request, run, min(after, 2**62)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- steering ---------------------------------------------------------------------------


@router.post(
    "/runs/{run_id}/cancel", response_model=RunOut, responses=CONFLICT, summary="Cancel a run"
)
async def cancel_run(run_id: RunId, state: State) -> RunOut:
    """Completed steps are not undone; outputs already emitted stay readable."""
    await state.service.cancel(run_id)
    return RunOut.of(await state.service.get_run(run_id))


@router.post(
    "/runs/{run_id}/pause", response_model=RunOut, responses=CONFLICT, summary="Pause a run"
)
async def pause_run(run_id: RunId, state: State) -> RunOut:
    """The run stops at its next step boundary, holding no worker."""
    return RunOut.of(await state.service.pause(run_id))


@router.post(
    "/runs/{run_id}/resume", response_model=RunOut, responses=CONFLICT, summary="Resume a run"
)
async def resume_run(run_id: RunId, state: State) -> RunOut:
    """A PAUSED, FAILED, CANCELED or CRASHED run continues from its last checkpoint."""
    return RunOut.of(await state.service.resume(run_id))


@router.post(
    "/runs/{run_id}/continue",
    response_model=RunOut,
    responses=CONFLICT,
    summary="Start the next iteration of a finished run",
)
async def continue_run(run_id: RunId, state: State) -> RunOut:
    """Answers with the run as the continue left it (QUEUED), not as a worker may already
    have moved it on."""
    handle = await state.service.continue_(run_id)
    return RunOut.of(handle.initial or await state.service.get_run(run_id))


@router.post(
    "/runs/{run_id}/fork",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": RunOut, "description": "The new run"},
        200: {"model": RunOut, "description": "The run that already had this `run_id`"},
        **NOT_FOUND,
    },
    summary="Start a new run from a recorded step of this one",
)
async def fork_run(run_id: RunId, body: ForkIn, state: State) -> JSONResponse:
    """Reuses the checkpoints before ``from_step`` (optionally with a new input or a
    published newer version) and executes from there. The fork checks its arguments (422
    naming the field; 404 for an unknown run or version); a ``run_id`` that exists
    answers that run (200)."""
    service = state.service
    with start_outcome(body.run_id):
        handle = await service.fork(
            run_id, body.from_step, new_run_id=body.run_id, input=body.input, version=body.version
        )
    run = await service.get_run(handle.id)
    if handle.created:
        state.metrics.runs_created.labels(run.workflow, "fork").inc()
    return json_response(RunOut.of(run), 201 if handle.created else 200, run_location(run.id))
