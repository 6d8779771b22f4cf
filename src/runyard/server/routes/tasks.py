"""``/v1/tasks``: saved run templates (workflow, default input, options); executing one
starts a run with ``task_id`` set."""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from ... import jsonutil
from ...app import validate_against_schema
from ...errors import NotFound, WorkflowNotFound
from ...schemas import (
    LiveRunOut,
    RunOptions,
    RunOut,
    RunStatusOut,
    TaskExecute,
    TaskIn,
    TaskOut,
    TaskPage,
    TaskPatch,
    ts,
)
from ...store.tx import Row
from ..auth import ApiRoute
from ..errors import error_responses
from ..live import check_options, start_and_answer, start_options
from ..state import ServerState, State
from ..wire import json_response
from .common import NOT_FOUND, paginated, set_next

router = APIRouter(prefix="/v1", tags=["tasks"], route_class=ApiRoute)

TaskId = Annotated[str, Path(max_length=200, description="The task's id")]


def task_out(row: Row) -> TaskOut:
    options = jsonutil.loads(row["options"])
    return TaskOut(
        id=row["id"],
        name=row["name"],
        workflow=row["workflow"],
        input=jsonutil.loads(row["input"]),
        options=options if isinstance(options, dict) else {},
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
    )


async def _check_workflow(state: ServerState, workflow: str, input: Any, check_input: bool) -> None:
    """The workflow is published and, when given, the input matches its schema."""
    record = await state.read(state.yard.store.get_workflow, workflow, None)
    if record is None:
        raise WorkflowNotFound(
            f"no workflow {workflow!r} is published",
            details=[{"field": "workflow", "in": "body", "error": "unknown workflow"}],
        )
    if check_input:
        schema = jsonutil.loads(record["input_schema"]) or {}
        validate_against_schema(workflow, schema, input, "input")


def _options_json(options: RunOptions) -> dict[str, Any]:
    check_options(options, "options.")
    dumped: dict[str, Any] = options.model_dump(mode="json", exclude_none=True)
    return dumped


@router.post(
    "/tasks",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": TaskOut, "description": "Created"},
        200: {"model": TaskOut, "description": "A task with this id already existed"},
        **NOT_FOUND,
    },
    summary="Save a task",
)
async def create_task(body: TaskIn, state: State) -> JSONResponse:
    store = state.yard.store
    if body.id is not None:
        # Saving the same id again answers with the stored task (like a run_id).
        with contextlib.suppress(NotFound):
            existing = await state.read(store.get_task, body.id)
            return json_response(task_out(existing), 200)
    await _check_workflow(state, body.workflow, body.input, "input" in body.model_fields_set)
    options = _options_json(body.options)
    task_id = body.id or f"task_{int(time.time() * 1000):012x}{secrets.token_hex(4)}"
    text = jsonutil.dumps(body.input, what="input") if body.input is not None else None
    row = await state.write(store.create_task_txn, task_id, body.name, body.workflow, text, options)
    return json_response(task_out(row), 201, {"Location": f"/v1/tasks/{task_id}"})


@router.get("/tasks", response_model=TaskPage, responses=paginated(TaskPage), summary="List tasks")
async def list_tasks(
    state: State,
    response: Response,
    cursor: Annotated[
        str | None, Query(max_length=200, description="The last task id seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> TaskPage:
    rows = await state.read(state.yard.store.list_tasks, cursor, limit + 1)
    nxt = rows[limit - 1]["id"] if len(rows) > limit else None
    set_next(response, nxt)
    return TaskPage(items=[task_out(r) for r in rows[:limit]], next_cursor=nxt)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=NOT_FOUND, summary="Get a task")
async def get_task(task_id: TaskId, state: State) -> TaskOut:
    return task_out(await state.read(state.yard.store.get_task, task_id))


@router.patch(
    "/tasks/{task_id}", response_model=TaskOut, responses=NOT_FOUND, summary="Update a task"
)
async def update_task(task_id: TaskId, body: TaskPatch, state: State) -> TaskOut:
    """Fields given replace the stored ones; ``options`` are merged field by field."""
    store = state.yard.store
    row = await state.read(store.get_task, task_id)
    given = body.model_fields_set
    name = body.name if "name" in given else row["name"]
    workflow = body.workflow if body.workflow is not None else row["workflow"]
    input = body.input if "input" in given else jsonutil.loads(row["input"])
    options = jsonutil.loads(row["options"]) or {}
    if body.options is not None:
        options.update(body.options.model_dump(mode="json", exclude_unset=True))
    merged = RunOptions.model_validate(options)
    if body.workflow is not None or "input" in given:
        await _check_workflow(state, workflow, input, "input" in given)
    text = jsonutil.dumps(input, what="input") if input is not None else None
    updated = await state.write(
        store.update_task_txn, task_id, name, workflow, text, _options_json(merged)
    )
    return task_out(updated)


@router.delete(
    "/tasks/{task_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete a task (its runs stay)",
)
async def delete_task(task_id: TaskId, state: State) -> Response:
    await state.write(state.yard.store.delete_task_txn, task_id)
    return Response(status_code=204)


@router.post(
    "/tasks/{task_id}/execute",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": RunOut, "description": "Created (async mode)"},
        200: {
            "model": RunOut | LiveRunOut,
            "description": "Live mode: the finished run and its first outputs; async mode: "
            "the run that already had this `run_id`",
        },
        202: {"model": RunStatusOut, "description": "Live mode: still going after the wait"},
        **error_responses([404, 429]),
    },
    summary="Start a run from a task",
)
async def execute_task(
    task_id: TaskId, body: TaskExecute, request: Request, state: State
) -> JSONResponse:
    """The task's input and options, overridden by what the body gives; answers as
    ``POST /v1/runs``."""
    row = await state.read(state.yard.store.get_task, task_id)
    stored = jsonutil.loads(row["options"]) or {}
    overrides = body.model_dump(
        mode="json", exclude_unset=True, include=set(RunOptions.model_fields)
    )
    options = RunOptions.model_validate({**stored, **overrides})
    given = body.model_fields_set
    if "input" in given or body.inputs is not None:
        input = body.input
    else:
        input = jsonutil.loads(row["input"])
    kwargs = start_options(
        options,
        input=input,
        inputs=body.inputs,
        custom_data=None,
        run_id=body.run_id,
        mode=body.mode,
        task_id=task_id,
    )
    return await start_and_answer(state, request, row["workflow"], kwargs, body.wait_timeout)
