"""``/ui/tasks``: saved run templates. The list (paged by id), a new task, a task's page
with its edit form (name, input, options) and Execute (a run of the task, whose page
comes next); errors are shown next to the field they name."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from ...errors import NotFound, RunyardError
from ...models import Task
from ...schemas import RunOptions
from ...service import TaskChange, check_options
from ..render import render
from ..schema_form import parse_json
from ..session import Viewer, ViewerDep, WriterDep
from ..state import ui_state

router = APIRouter()

#: Tasks a page shows.
PAGE_SIZE = 50


@dataclass(slots=True)
class TaskForm:
    """What the browser sent for a task, and the errors by field ("" for the form)."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def json_field(self, name: str, *, obj: bool = False) -> tuple[bool, Any]:
        """The field ``name`` parsed as JSON: ``(given, value)`` (empty: not given)."""
        text = self.values.get(name, "").strip()
        if not text:
            return False, None
        try:
            value = parse_json(text)
        except ValueError as exc:
            self.add_error(name, f"not JSON: {exc}")
            return False, None
        if obj and not isinstance(value, dict):
            self.add_error(name, "a JSON object ({...})")
            return False, None
        return True, value

    def options(self) -> dict[str, Any] | None:
        """The run options given, checked as ``POST /v1/runs`` checks them."""
        given, value = self.json_field("options", obj=True)
        if not given:
            return None
        try:
            options = RunOptions.model_validate(value)
            check_options(options, "options.")
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                self.add_error("options", f"{where}: {err['msg']}" if where else err["msg"])
            return None
        except RunyardError as exc:
            self.add_error("options", exc.message)
            return None
        dumped: dict[str, Any] = options.model_dump(mode="json", exclude_none=True)
        return dumped

    def place(self, exc: RunyardError) -> None:
        """The service's error next to the fields it names (``input.x`` goes to input)."""
        details = exc.details if isinstance(exc.details, list) else []
        placed = False
        for d in details:
            if not isinstance(d, dict):
                continue
            where = str(d.get("field", ""))
            top = where.split(".")[0]
            name = top if top in ("name", "workflow", "input", "options") else ""
            self.add_error(name, f"{where}: {d.get('error', 'invalid')}" if where else exc.message)
            placed = True
        if not placed:
            self.add_error("", exc.message)


def _pretty(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


async def _sent(request: Request) -> TaskForm:
    form = await request.form()
    return TaskForm({k: v for k, v in form.multi_items() if isinstance(v, str) and k != "csrf"})


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(request: Request, viewer: ViewerDep) -> Response:
    return await _list(request, viewer, TaskForm())


async def _list(
    request: Request, viewer: Viewer, form: TaskForm, status_code: int = 200
) -> Response:
    service = ui_state(request).service
    after = request.query_params.get("cursor") or None
    tasks = await service.tasks(after=after, limit=PAGE_SIZE + 1)
    nxt = tasks[PAGE_SIZE - 1].id if len(tasks) > PAGE_SIZE else None
    workflows = sorted({w.name for w in await service.published_workflows()})
    context = {
        "tasks": tasks[:PAGE_SIZE],
        "form": form,
        "workflows": workflows,
        "first_url": "/ui/tasks" if after else None,
        "next_url": ("/ui/tasks?" + urllib.parse.urlencode({"cursor": nxt})) if nxt else None,
    }
    return render(
        request, "tasks.html", context, viewer=viewer, active="tasks", status_code=status_code
    )


@router.post("/tasks", response_class=HTMLResponse)
async def create_task(request: Request, viewer: WriterDep) -> Response:
    """Save a new task; its page next, or the list with the form and its errors."""
    service = ui_state(request).service
    form = await _sent(request)
    workflow = form.values.get("workflow", "").strip()
    if not workflow:
        form.add_error("workflow", "required")
    input_given, input = form.json_field("input")
    options = form.options()
    if not form.errors:
        try:
            task, _ = await service.create_task(
                workflow=workflow,
                task_id=form.values.get("id", "").strip() or None,
                name=form.values.get("name", "").strip() or None,
                input=input,
                input_given=input_given,
                options=options,
            )
        except RunyardError as exc:
            if exc.http_status >= 500:
                raise
            form.place(exc)
        else:
            return RedirectResponse(
                f"/ui/tasks/{urllib.parse.quote(task.id)}?flash=Task+saved&flash_kind=ok",
                status_code=303,
            )
    return await _list(request, viewer, form, status_code=422)


async def _task_page(
    request: Request,
    viewer: Viewer,
    task: Task,
    form: TaskForm | None = None,
    status_code: int = 200,
) -> Response:
    if form is None:
        form = TaskForm(
            {
                "name": task.name or "",
                "input": _pretty(task.input),
                "options": _pretty(task.options),
            }
        )
    context = {"task": task, "form": form}
    return render(
        request, "task.html", context, viewer=viewer, active="tasks", status_code=status_code
    )


def _missing(request: Request, viewer: Viewer, exc: RunyardError) -> Response:
    return render(
        request,
        "error.html",
        {"title": "No such task", "message": exc.message},
        viewer=viewer,
        active="tasks",
        status_code=404,
    )


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, task_id: str, viewer: ViewerDep) -> Response:
    try:
        task = await ui_state(request).service.task(task_id)
    except NotFound as exc:
        return _missing(request, viewer, exc)
    return await _task_page(request, viewer, task)


@router.post("/tasks/{task_id}", response_class=HTMLResponse)
async def update_task(request: Request, task_id: str, viewer: WriterDep) -> Response:
    """Save the edit form: name and input replace the stored ones, options given replace
    those of the same name."""
    service = ui_state(request).service
    try:
        task = await service.task(task_id)
    except NotFound as exc:
        return _missing(request, viewer, exc)
    form = await _sent(request)
    input_given, input = form.json_field("input")
    options = form.options()
    if not form.errors:
        name = form.values.get("name", "").strip() or None
        change = TaskChange(
            given=frozenset({"name", "input"}),
            name=name,
            input=input if input_given else None,
            options=options,
        )
        try:
            await service.update_task(task_id, change)
        except RunyardError as exc:
            if exc.http_status >= 500:
                raise
            form.place(exc)
        else:
            return RedirectResponse(
                f"/ui/tasks/{urllib.parse.quote(task_id)}?flash=Task+saved&flash_kind=ok",
                status_code=303,
            )
    return await _task_page(request, viewer, task, form, status_code=422)


@router.post("/tasks/{task_id}/execute", response_class=HTMLResponse)
async def execute_task(request: Request, task_id: str, viewer: WriterDep) -> Response:
    """Start a run of the task (its input, or the one given); the run's page next."""
    service = ui_state(request).service
    try:
        task = await service.task(task_id)
    except NotFound as exc:
        return _missing(request, viewer, exc)
    form = await _sent(request)
    input_given, input = form.json_field("run_input")
    if not form.errors:
        try:
            req = await service.task_request(task_id, {}, input=input, input_given=input_given)
            handle = await service.start_run(req)
        except RunyardError as exc:
            if exc.http_status >= 500:
                raise
            form.add_error("run_input", exc.message)
        else:
            return RedirectResponse(f"/ui/runs/{urllib.parse.quote(handle.id)}", status_code=303)
    page_form = TaskForm(
        {
            "name": task.name or "",
            "input": _pretty(task.input),
            "options": _pretty(task.options),
            "run_input": form.values.get("run_input", ""),
        },
        form.errors,
    )
    return await _task_page(request, viewer, task, page_form, status_code=422)
