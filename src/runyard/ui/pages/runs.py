"""``/ui/runs``: the runs list (filters, search by id, cursor paging, live rows) and its
bulk cancel / resume, by selection or by the current filter (counted, then confirmed)."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import InvalidInput, RunNotFound, RunyardError
from ...service import BULK_MAX, Service
from ..filters import STATUSES, RunsFilter, parse_filter, valid_run_id
from ..render import render
from ..session import ViewerDep, WriterDep
from ..state import ui_state

router = APIRouter()

#: Runs a page shows.
PAGE_SIZE = 50
ACTIONS = ("cancel", "resume")


def _flash_url(filt: RunsFilter, message: str, kind: str = "ok") -> str:
    return "/ui/runs?" + filt.query(flash=message, flash_kind=kind)


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(request: Request, viewer: ViewerDep) -> Response:
    """The list, newest first; ``q`` goes to the run with that id."""
    service = ui_state(request).service
    params = request.query_params
    q = (params.get("q") or "").strip()
    if q:
        if valid_run_id(q):
            try:
                await service.get_run(q)
                return RedirectResponse(f"/ui/runs/{urllib.parse.quote(q)}", status_code=303)
            except RunNotFound:
                pass
        return RedirectResponse(
            "/ui/runs?"
            + urllib.parse.urlencode(
                {"flash": f"No run has the id {q[:200]!r}", "flash_kind": "error"}
            ),
            status_code=303,
        )
    filt = parse_filter(params)
    cursor = params.get("cursor") or None
    errors = dict(filt.errors)
    runs = []
    next_cursor = None
    status_code = 200
    try:
        page = await service.list_runs(**filt.service_args(), cursor=cursor, limit=PAGE_SIZE)
        runs, next_cursor = page.items, page.next_cursor
    except InvalidInput as exc:
        errors["cursor" if cursor else "filter"] = exc.message
        status_code = 400
    if errors:
        status_code = 400
    workflows = sorted({w.name for w in await service.published_workflows()})
    context = {
        "runs": runs,
        "filt": filt,
        "errors": errors,
        "statuses": STATUSES,
        "workflows": workflows,
        "first_url": ("/ui/runs?" + filt.query()) if cursor else None,
        "next_url": ("/ui/runs?" + filt.query(cursor=next_cursor)) if next_cursor else None,
        "live_url": "/ui/live/runs?"
        + urllib.parse.urlencode(
            [*filt.query_items(), *(("id", f"{r.status.value}:{r.id}") for r in runs)]
            + ([("top", f"{runs[0].created_at:.6f}")] if runs and not cursor else [])
            + ([("newest", "1")] if not cursor else [])
        ),
        "bulk_max": BULK_MAX,
    }
    return render(
        request, "runs.html", context, viewer=viewer, active="runs", status_code=status_code
    )


@router.get("/bulk", response_class=HTMLResponse)
async def bulk_confirm(request: Request, viewer: ViewerDep) -> Response:
    """How many runs the current filter selects for ``action``, and a button to do it."""
    action = request.query_params.get("action", "")
    filt = parse_filter(request.query_params)
    if action not in ACTIONS:
        return _flash_redirect(filt, f"action: {action[:40]!r} is not one of cancel, resume")
    if filt.errors:
        return _flash_redirect(filt, "; ".join(filt.errors.values()))
    if not viewer.can_write:
        return render(
            request,
            "error.html",
            {
                "title": "Not allowed",
                "message": "your API key can only look: changes need a key with the write scope",
            },
            viewer=viewer,
            status_code=403,
        )
    ids = await _select(ui_state(request).service, action, filt)
    context = {"action": action, "filt": filt, "count": len(ids), "bulk_max": BULK_MAX}
    return render(request, "runs_bulk.html", context, viewer=viewer, active="runs")


def _flash_redirect(filt: RunsFilter, message: str) -> Response:
    return RedirectResponse(_flash_url(filt, message, "error"), status_code=303)


async def _select(service: Service, action: str, filt: RunsFilter) -> list[str]:
    """The runs ``filt`` selects to which ``action`` applies now (at most BULK_MAX)."""
    return await service.select_runs(
        action,
        workflow=filt.workflow,
        statuses=list(filt.statuses) or None,
        task_id=filt.task_id,
        schedule_id=filt.schedule_id,
        created_after=filt.created_after,
        created_before=filt.created_before,
    )


@router.post("/bulk")
async def bulk_act(
    request: Request,
    viewer: WriterDep,
    action: Annotated[str, Form(max_length=20)],
    scope: Annotated[str, Form(max_length=20)] = "selection",
    ids: Annotated[list[str] | None, Form(max_length=200)] = None,
) -> Response:
    """Cancel or resume the runs selected (``ids``) or, with ``scope=filter``, those the
    filter in the form selects (at most ``BULK_MAX``)."""
    form = await request.form()
    filt = parse_filter(form)
    if action not in ACTIONS:
        return _flash_redirect(filt, f"action: {action[:40]!r} is not one of cancel, resume")
    service = ui_state(request).service
    if scope == "filter":
        if filt.errors:
            return _flash_redirect(filt, "; ".join(filt.errors.values()))
        chosen = await _select(service, action, filt)
    elif scope == "selection":
        chosen = [i for i in ids or [] if valid_run_id(i)][:BULK_MAX]
        if not chosen:
            return _flash_redirect(filt, "ids: select at least one run")
    else:
        return _flash_redirect(filt, f"scope: {scope[:40]!r} is not one of selection, filter")
    try:
        if action == "cancel":
            done = await service.cancel(ids=chosen) if chosen else []
            verb = "Canceled"
        else:
            done = await service.resume_many(chosen)
            verb = "Resumed"
    except RunyardError as exc:
        return _flash_redirect(filt, exc.message)
    skipped = len(chosen) - len(done)
    message = f"{verb} {len(done)} run{'s' if len(done) != 1 else ''}"
    if skipped:
        message += f" ({skipped} could not be {verb.lower()} in their status)"
    return RedirectResponse(_flash_url(filt, message), status_code=303)
