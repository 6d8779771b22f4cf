"""``/ui/schedules``: the list (paged by id) and a schedule's page: its cron in words,
next fire times, last fires with their runs, counters; pause (with a note), resume and
trigger (a write key's; a fire's run page is linked)."""

from __future__ import annotations

import urllib.parse
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import NotFound, RunyardError
from ...service import Schedule
from ...service.cron_words import describe_cron
from ..render import render
from ..session import Viewer, ViewerDep, WriterDep
from ..state import ui_state

router = APIRouter()

#: Schedules a page shows.
PAGE_SIZE = 50
#: The longest pause note (as the service takes).
NOTE_MAX = 1000


def _local(schedule: Schedule, times: list[float]) -> list[str]:
    """``times`` on the wall clock of the schedule's timezone (``Mon 2026-12-07 09:00:00
    CET``)."""
    try:
        tz = ZoneInfo(schedule.spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ["" for _ in times]
    return [datetime.fromtimestamp(t, tz).strftime("%a %Y-%m-%d %H:%M:%S %Z") for t in times]


def _words(schedule: Schedule) -> str | None:
    return describe_cron(schedule.spec.cron) if schedule.spec.cron else None


@router.get("/schedules", response_class=HTMLResponse)
async def schedules_page(request: Request, viewer: ViewerDep) -> Response:
    service = ui_state(request).service
    cursor = request.query_params.get("cursor") or None
    page, nxt = await service.list_schedules(cursor=cursor, limit=PAGE_SIZE)
    context = {
        "schedules": [(s, _words(s)) for s in page],
        "first_url": "/ui/schedules" if cursor else None,
        "next_url": ("/ui/schedules?" + urllib.parse.urlencode({"cursor": nxt})) if nxt else None,
    }
    return render(request, "schedules.html", context, viewer=viewer, active="schedules")


def _url(schedule_id: str, flash: str, kind: str = "ok") -> str:
    query = urllib.parse.urlencode({"flash": flash, "flash_kind": kind})
    return f"/ui/schedules/{urllib.parse.quote(schedule_id)}?{query}"


def _missing(request: Request, viewer: Viewer, exc: RunyardError) -> Response:
    return render(
        request,
        "error.html",
        {"title": "No such schedule", "message": exc.message},
        viewer=viewer,
        active="schedules",
        status_code=404,
    )


async def _page(
    request: Request,
    viewer: Viewer,
    schedule_id: str,
    *,
    note: str = "",
    note_error: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        schedule = await ui_state(request).service.get_schedule(schedule_id)
    except NotFound as exc:
        return _missing(request, viewer, exc)
    context = {
        "s": schedule,
        "words": _words(schedule),
        "next_local": _local(schedule, schedule.next_fires),
        "note": note,
        "note_error": note_error,
    }
    return render(
        request,
        "schedule.html",
        context,
        viewer=viewer,
        active="schedules",
        status_code=status_code,
    )


@router.get("/schedules/{schedule_id}", response_class=HTMLResponse)
async def schedule_page(request: Request, schedule_id: str, viewer: ViewerDep) -> Response:
    return await _page(request, viewer, schedule_id)


@router.post("/schedules/{schedule_id}/pause", response_class=HTMLResponse)
async def pause(
    request: Request,
    schedule_id: str,
    viewer: WriterDep,
    note: Annotated[str, Form()] = "",
) -> Response:
    """Stop firing until resumed; the note says why (shown on the page)."""
    text = note.strip()
    if len(text) > NOTE_MAX:
        return await _page(
            request,
            viewer,
            schedule_id,
            note=text,
            note_error=f"at most {NOTE_MAX} characters ({len(text)} given)",
            status_code=422,
        )
    try:
        await ui_state(request).service.pause_schedule(schedule_id, text or None)
    except NotFound as exc:
        return _missing(request, viewer, exc)
    return RedirectResponse(_url(schedule_id, "Schedule paused"), status_code=303)


@router.post("/schedules/{schedule_id}/resume", response_class=HTMLResponse)
async def resume(request: Request, schedule_id: str, viewer: WriterDep) -> Response:
    """Fire again from the next fire time after now."""
    try:
        await ui_state(request).service.resume_schedule(schedule_id)
    except NotFound as exc:
        return _missing(request, viewer, exc)
    return RedirectResponse(_url(schedule_id, "Schedule resumed"), status_code=303)


@router.post("/schedules/{schedule_id}/trigger", response_class=HTMLResponse)
async def trigger(request: Request, schedule_id: str, viewer: WriterDep) -> Response:
    """Fire now (paused or not), under the schedule's overlap policy; the page says what
    became of the fire."""
    try:
        fire = await ui_state(request).service.trigger_schedule(schedule_id)
    except NotFound as exc:
        return _missing(request, viewer, exc)
    if fire.run_id is not None:
        message = f"Triggered: run {fire.run_id} ({fire.outcome})"
        return RedirectResponse(_url(schedule_id, message), status_code=303)
    error = f": {fire.error}" if fire.error else ""
    message = f"Triggered: the fire was {fire.state}{error}"
    kind = "error" if fire.state == "failed" else "info"
    return RedirectResponse(_url(schedule_id, message, kind), status_code=303)
