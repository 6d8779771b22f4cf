"""Live updates of the runs list and of a run's page: Server-Sent Events under
``/ui/live/...``, fed by the server's own change stream (the hub this process's commits
and the other processes' notifications feed), never by the browser polling.

* ``/ui/live/runs?<filter>&id=<status>:<run id>...&top=<created_at>``: for each run shown
  (its status as rendered), ``status:<id>`` and ``took:<id>`` with its status and run
  time cells when they change; with ``top`` (the first page), ``new-runs`` with the rows
  of runs created since that match the filter, newest first, for the top of the table.
* ``/ui/live/runs/{id}``: ``summary``, ``steps``, ``items``, ``transitions`` (the parts of
  the run's page, :data:`runyard.ui.pages.run.LIVE_PARTS`) when they change, then ``end``
  once the run has ended (the page closes the stream).

The change stream announces a run's status changes, not its start, progress or steps
(they are on the workers' hot path), so each stream also looks again every
``RUNYARD_POLL_S`` seconds: on the server, reading only what it shows.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import RunNotFound, RunyardError
from ..models import Run
from ..rules import RUN_ID_RE
from ..service import wait_event
from .filters import STATUSES, RunsFilter, parse_filter
from .pages.run import live_sections
from .render import render_fragment
from .session import ViewerDep
from .state import ui_state

router = APIRouter()

#: The browser's reconnection delay, milliseconds.
RETRY_MS = 2000
#: A comment line this often keeps idle connections (and proxies) open.
PING_S = 15.0
#: Rows a stream of the runs list watches at most (a page shows 50).
WATCH_MAX = 100
#: Rows a live list keeps (app.js drops the oldest past it); the stream watches as many.
ROWS_MAX = 200
#: New runs sent at once at most (the rest come with the next look).
NEW_MAX = 50
_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse_message(event: str, html: str) -> str:
    """One event whose data is ``html`` (each line a ``data:`` line)."""
    lines = html.splitlines() or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _shown(run: Run) -> tuple[str, float | None, float | None, str | None]:
    """What a row shows of a run that can change."""
    return (run.status.value, run.started_at, run.finished_at, run.waiting_for)


async def _ended(request: Request) -> bool:
    stopping = ui_state(request).stopping
    return (stopping is not None and stopping.is_set()) or await request.is_disconnected()


@router.get("/live/runs")
async def live_runs(request: Request, viewer: ViewerDep) -> Response:
    """Status changes of the runs shown, and new runs matching the filter."""
    service = ui_state(request).service
    params = request.query_params
    filt = parse_filter(params)
    watched: dict[str, tuple[Any, ...] | None] = {}
    # Oldest first (the page lists newest first), as new runs are added after them: the
    # first entries are the oldest rows, the ones dropped past ROWS_MAX.
    for value in reversed(params.getlist("id")[:WATCH_MAX]):
        status, _, run_id = value.partition(":")
        if RUN_ID_RE.match(run_id):
            watched[run_id] = (status,) if status in STATUSES else None
    top_text = params.get("top")
    try:
        top = float(top_text) if top_text else None
    except ValueError:
        top = None
    newest = params.get("newest") == "1" and not filt.errors
    poll_s = service.settings.poll_s

    async def row_events(run: Run) -> AsyncIterator[str]:
        context = {"run": run}
        yield sse_message(f"status:{run.id}", render_fragment(request, "_status.html", context))
        yield sse_message(f"took:{run.id}", render_fragment(request, "_runs_took.html", context))

    async def stream() -> AsyncIterator[str]:
        nonlocal top
        yield f"retry: {RETRY_MS}\n\n"
        next_ping = time.monotonic() + PING_S
        with service.any_run_changes() as changed:
            heard: set[str] = set(watched)  # first look: every row, as rendered
            everything = True
            while True:
                for run in await service.runs_now([i for i in watched if everything or i in heard]):
                    now = _shown(run)
                    if _changed(watched.get(run.id), now):
                        async for message in row_events(run):
                            yield message
                    watched[run.id] = now
                if newest:
                    page = await service.list_runs(
                        **filt.service_args() | {"created_after": _later(top, filt)},
                        limit=NEW_MAX,
                    )
                    fresh = [r for r in page.items if r.id not in watched]
                    if fresh:
                        rows = "".join(
                            render_fragment(request, "_runs_row.html", {"run": r}) for r in fresh
                        )
                        yield sse_message("new-runs", rows)
                        for r in fresh:
                            watched[r.id] = _shown(r)
                        for stale in list(watched)[: max(0, len(watched) - ROWS_MAX)]:
                            del watched[stale]  # (the page drops those rows too: app.js)
                        top = max(r.created_at for r in fresh)
                if await _ended(request):
                    return
                now_s = time.monotonic()
                if now_s >= next_ping:
                    next_ping = now_s + PING_S
                    yield ": ping\n\n"
                await wait_event(changed.event, max(0.0, min(poll_s, next_ping - now_s)))
                heard, all_changed = changed.take()
                # A look on the timeout re-reads the rows not ended (a start is not
                # announced); ended runs change only by an announced action.
                everything = all_changed
                if not heard and not all_changed:
                    heard = {i for i, v in watched.items() if v is None or not _final(v)}

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)


def _changed(before: tuple[Any, ...] | None, now: tuple[Any, ...]) -> bool:
    """Whether a row showing ``before`` must be updated (only its status is known of a row
    as the page rendered it)."""
    if before is None:
        return True
    return before[0] != now[0] if len(before) == 1 else before != now


_TERMINAL = {"SUCCEEDED", "PARTIAL_SUCCEEDED", "FAILED", "CANCELED", "CRASHED", "INVALID"}


def _final(shown: tuple[Any, ...]) -> bool:
    return shown[0] in _TERMINAL


def _later(top: float | None, filt: RunsFilter) -> float | None:
    """The lower bound of creation times for new runs: the newest shown (the list's own
    ``created_after`` if later)."""
    bound = filt.created_after
    if top is None:
        return bound
    return top if bound is None else max(top, bound)


@router.get("/live/runs/{run_id}")
async def live_run(request: Request, run_id: str, viewer: ViewerDep) -> Response:
    """The live parts of a run's page when they change; ``end`` once the run has ended."""
    service = ui_state(request).service
    if not RUN_ID_RE.match(run_id):
        return Response(status_code=404)
    raw = request.query_params.get("items_offset", "0")
    items_offset = int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= 100_000 else 0
    poll_s = service.settings.poll_s

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        shown: dict[str, object] = {}
        next_ping = time.monotonic() + PING_S
        with service.run_changes(run_id) as changed:
            while True:
                changed.clear()
                try:
                    run, parts = await live_sections(
                        service, request, run_id, viewer, items_offset, shown
                    )
                except RunNotFound:
                    yield sse_message("end", "")
                    return
                except RunyardError:
                    return  # (the database is away: the browser reconnects)
                for name, html in parts.items():
                    yield sse_message(name, html)
                if run.terminal:
                    yield sse_message("end", "")
                    return
                if await _ended(request):
                    return
                now_s = time.monotonic()
                if now_s >= next_ping:
                    next_ping = now_s + PING_S
                    yield ": ping\n\n"
                await wait_event(changed, max(0.0, min(poll_s, next_ping - now_s)))

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)
