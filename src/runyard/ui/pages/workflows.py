"""``/ui/workflows``: what workers published, each with its input schema and the live
workers serving it, and a form built from the schema that starts a run (the service
validates the input; its errors are shown next to the fields they name)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import InvalidInput, RunyardError, WorkflowNotFound
from ...models import WorkflowRecord
from ...service import StartRequest, validate_against_schema
from ..render import render
from ..schema_form import SchemaForm, build_form, place_errors, read_input
from ..session import Viewer, ViewerDep, WriterDep
from ..state import ui_state

router = APIRouter()


@router.get("/workflows", response_class=HTMLResponse)
async def workflows_page(request: Request, viewer: ViewerDep) -> Response:
    """Every published workflow (its newest version) with the workers serving it."""
    ui = ui_state(request)
    service = ui.service
    records = await service.published_workflows()
    live = await service.workers(ui.worker_seen_s)
    rows = [(r, [w for w in live if r.ref in w.workflows]) for r in records]
    return render(request, "workflows.html", {"rows": rows}, viewer=viewer, active="workflows")


async def _workflow_page(
    request: Request,
    viewer: Viewer,
    record: WorkflowRecord,
    form: SchemaForm,
    status_code: int = 200,
) -> Response:
    ui = ui_state(request)
    workers = await ui.service.workers(ui.worker_seen_s, serving=record)
    context = {"record": record, "workers": workers, "form": form}
    return render(
        request,
        "workflow.html",
        context,
        viewer=viewer,
        active="workflows",
        status_code=status_code,
    )


def _not_found(request: Request, viewer: Viewer, exc: RunyardError) -> Response:
    return render(
        request,
        "error.html",
        {"title": "No such workflow", "message": exc.message},
        viewer=viewer,
        active="workflows",
        status_code=404,
    )


@router.get("/workflows/{name}", response_class=HTMLResponse)
async def workflow_page(request: Request, name: str, viewer: ViewerDep) -> Response:
    """A workflow: description, options, input schema, workers, and the start form."""
    service = ui_state(request).service
    try:
        record = await service.published_workflow(name)
    except WorkflowNotFound as exc:
        return _not_found(request, viewer, exc)
    return await _workflow_page(request, viewer, record, build_form(record.input_schema))


@router.post("/workflows/{name}/start", response_class=HTMLResponse)
async def start_run(request: Request, name: str, viewer: WriterDep) -> Response:
    """Start a run from the form: its page next, or the form again with the errors."""
    service = ui_state(request).service
    try:
        record = await service.published_workflow(name)
    except WorkflowNotFound as exc:
        return _not_found(request, viewer, exc)
    form = build_form(record.input_schema)
    sent: dict[str, Any] = {
        k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)
    }
    ok, value = read_input(form, sent)
    if not ok and not form.whole:
        # What could be read is checked too, so that every bad field is named at once
        # (a required field's absence is already named).
        try:
            validate_against_schema(name, record.input_schema_json, value, "input")
        except InvalidInput as exc:
            details = exc.details if isinstance(exc.details, list) else []
            nested = [d for d in details if isinstance(d, dict) and d.get("field") != "input"]
            place_errors(form, nested, exc.message, quiet=True)
    if ok:
        try:
            handle = await service.start_run(StartRequest(workflow=name, input=value))
        except RunyardError as exc:
            if exc.http_status >= 500:
                raise
            details = exc.details if isinstance(exc.details, list) else []
            place_errors(form, [d for d in details if isinstance(d, dict)], exc.message)
        else:
            target = f"/ui/runs/{urllib.parse.quote(handle.id)}"
            return RedirectResponse(target, status_code=303)
    return await _workflow_page(request, viewer, record, form, status_code=422)
