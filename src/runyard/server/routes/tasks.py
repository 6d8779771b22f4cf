"""``/v1/tasks``: saved run templates (workflow, default input, options); executing one
starts a run with ``task_id`` set."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from ...models import Task
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
from ...service import TaskChange, check_options
from ..auth import ApiRoute
from ..errors import error_responses, start_outcome
from ..live import start_and_answer
from ..state import State
from ..wire import json_response
from .common import NOT_FOUND, paginated, set_next

router = APIRouter(prefix="/v1", tags=["tasks"], route_class=ApiRoute)

TaskId = Annotated[str, Path(max_length=200, description="The task's id")]


def task_out(task: Task) -> TaskOut:
    return TaskOut(
        id=task.id,
        name=task.name,
        workflow=task.workflow,
        input=task.input,
        options=task.options,
        created_at=ts(task.created_at),
        updated_at=ts(task.updated_at),
    )


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
    task, created = await state.service.create_task(
        workflow=body.workflow,
        task_id=body.id,
        name=body.name,
        input=body.input,
        input_given="input" in body.model_fields_set,
        options=_options_json(body.options),
    )
    if not created:
        return json_response(task_out(task), 200)
    return json_response(task_out(task), 201, {"Location": f"/v1/tasks/{task.id}"})


@router.get("/tasks", response_model=TaskPage, responses=paginated(TaskPage), summary="List tasks")
async def list_tasks(
    state: State,
    response: Response,
    cursor: Annotated[
        str | None, Query(max_length=200, description="The last task id seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> TaskPage:
    tasks = await state.service.tasks(after=cursor, limit=limit + 1)
    nxt = tasks[limit - 1].id if len(tasks) > limit else None
    set_next(response, nxt)
    return TaskPage(items=[task_out(t) for t in tasks[:limit]], next_cursor=nxt)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=NOT_FOUND, summary="Get a task")
async def get_task(task_id: TaskId, state: State) -> TaskOut:
    return task_out(await state.service.task(task_id))


@router.patch(
    "/tasks/{task_id}", response_model=TaskOut, responses=NOT_FOUND, summary="Update a task"
)
async def update_task(task_id: TaskId, body: TaskPatch, state: State) -> TaskOut:
    """Fields given replace the stored ones; ``options`` are merged field by field."""
    given = body.model_fields_set
    options = None
    if body.options is not None:
        stored = (await state.service.task(task_id)).options
        patch = body.options.model_dump(mode="json", exclude_unset=True)
        options = _options_json(RunOptions.model_validate({**stored, **patch}))
    change = TaskChange(
        given=frozenset(given),
        name=body.name,
        workflow=body.workflow,
        input=body.input,
        options=options,
    )
    return task_out(await state.service.update_task(task_id, change))


@router.delete(
    "/tasks/{task_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete a task (its runs stay)",
)
async def delete_task(task_id: TaskId, state: State) -> Response:
    await state.service.delete_task(task_id)
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
    overrides = body.model_dump(
        mode="json", exclude_unset=True, include=set(RunOptions.model_fields)
    )
    req = await state.service.task_request(
        task_id,
        overrides,
        input=body.input,
        input_given="input" in body.model_fields_set,
        inputs=body.inputs,
        run_id=body.run_id,
        mode=body.mode,
    )
    with start_outcome(body.run_id):  # a 503 says how to learn whether it was created
        return await start_and_answer(state, request, req, body.wait_timeout)
