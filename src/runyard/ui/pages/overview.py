"""``/ui/``: the overview. Runs not ended by status, runs ended and failed over time
(charts), queue depth per workflow, live workers with the items they hold, and credits by
workflow and day (a chart). ``/ui/live/overview`` keeps it current: a Server-Sent Events
stream that sends the page's body again when its figures changed. It looks when the
server's change stream says runs changed (at most once a second), and every
:data:`BACKSTOP_S` seconds, as every waiter of the server re-checks: some changes are not
announced (a run's start by a worker, progress, credits, heartbeats). The browser never
polls."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from markupsafe import Markup

from ...models import RunStatus
from ...service import Activity, Overview
from ..render import render, render_fragment
from ..session import ViewerDep
from ..state import ui_state

router = APIRouter()

#: The stream sends at most one body per this many seconds, however busy the server.
MIN_GAP_S = 1.0
#: The stream looks again this often without being told (what is not announced).
BACKSTOP_S = 2.0
#: ... and sends the body at least this often (its times, the workers' heartbeats).
REFRESH_S = 30.0
#: The browser's reconnection delay, milliseconds.
RETRY_MS = 2000
#: Days of credits the usage chart shows.
USAGE_DAYS = 14
OPEN = [s.value for s in RunStatus if not s.terminal]
ENDED = [s.value for s in RunStatus if s.terminal]


def _activity_chart(activity: Activity, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "x": activity.starts,
        "bars": True,
        "series": [
            {"label": "ended", "values": activity.ended, "color": "--live"},
            {"label": "failed", "values": activity.failed, "color": "--bad"},
        ],
    }


def _usage_chart(overview: Overview) -> dict[str, Any] | None:
    usage = overview.usage
    if usage is None:
        return None
    palette = ["--live", "--ok", "--warn", "--bad", "--accent", "--muted"]
    return {
        "title": "Credits per day",
        "x": [calendar.timegm(time.strptime(d, "%Y-%m-%d")) for d in usage.days],
        "bars": False,
        "days": True,
        "series": [
            {"label": name, "values": values, "color": palette[i % len(palette)]}
            for i, (name, values) in enumerate(usage.credits.items())
        ],
    }


def _script_json(value: Any) -> Markup:
    """JSON to put inside a ``<script type="application/json">``: no ``<``, ``>`` or
    ``&`` (a workflow named ``</script>`` cannot end the element)."""
    text = json.dumps(value, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


async def _context(request: Request, max_age_s: float = 0.0) -> dict[str, Any]:
    ui = ui_state(request)
    overview = await ui.service.overview(
        seen_within_s=ui.worker_seen_s, usage_days=USAGE_DAYS, max_age_s=max_age_s
    )
    charts = {
        "hour": _activity_chart(overview.last_hour, "Runs ended per minute, last hour"),
        "day": _activity_chart(overview.last_day, "Runs ended per hour, last 24 h"),
        "usage": _usage_chart(overview),
    }
    return {
        "o": overview,
        "open_statuses": OPEN,
        "ended_statuses": ENDED,
        "charts": {k: _script_json(v) for k, v in charts.items() if v is not None},
    }


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, viewer: ViewerDep) -> Response:
    context = await _context(request)
    return render(request, "overview.html", context, viewer=viewer, active="overview")


def _figures(o: Overview) -> tuple[object, ...]:
    """What the body shows but its times: sent again when it changes."""
    return (
        o.open,
        o.queues,
        o.last_hour.ended,
        o.last_hour.failed,
        o.last_day.by_status,
        [(w.worker.id, [(h.run_id, h.item_idx) for h in w.held]) for w in o.workers],
        len(o.orphaned),
        o.usage.credits if o.usage is not None else None,
    )


def _sse(event: str, html: str) -> str:
    # Each line of the fragment is a data line; the browser joins them with newlines.
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"


@router.get("/live/overview")
async def live_overview(request: Request, viewer: ViewerDep) -> Response:
    """The overview's body, sent again (event ``overview``) whenever runs change."""
    service = ui_state(request).service

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        shown: tuple[object, ...] | None = None
        sent_at = time.monotonic()
        with service.any_run_changes() as changed:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.event.wait(), BACKSTOP_S)
                changed.take()
                # (streams of other viewers refresh on the same changes: one read for all)
                context = await _context(request, max_age_s=MIN_GAP_S)
                figures = _figures(context["o"])
                if figures != shown or time.monotonic() - sent_at >= REFRESH_S:
                    shown, sent_at = figures, time.monotonic()
                    html = render_fragment(request, "overview_body.html", context)
                    yield _sse("overview", html)
                await asyncio.sleep(MIN_GAP_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
