"""The templates (Jinja2 on ``runyard/ui/templates``, autoescaped) and :func:`render`,
which gives every page the viewer, its CSRF token, the active nav item and the helpers:
times as relative text with the ISO time as a title, durations, status badges, JSON."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import time
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from ..models import RunStatus
from .session import Viewer
from .state import ui_state

#: The top nav: (key, label, path).
NAV: tuple[tuple[str, str, str], ...] = (
    ("overview", "Overview", "/ui/"),
    ("runs", "Runs", "/ui/runs"),
    ("workflows", "Workflows", "/ui/workflows"),
    ("tasks", "Tasks", "/ui/tasks"),
    ("schedules", "Schedules", "/ui/schedules"),
)

#: The colour family of each status badge (``app.css``: ``.badge-<family>``).
STATUS_FAMILY = {
    RunStatus.SCHEDULED.value: "wait",
    RunStatus.QUEUED.value: "wait",
    RunStatus.RUNNING.value: "live",
    RunStatus.PAUSED.value: "wait",
    RunStatus.SUCCEEDED.value: "ok",
    RunStatus.PARTIAL_SUCCEEDED.value: "warn",
    RunStatus.FAILED.value: "bad",
    RunStatus.CANCELED.value: "muted",
    RunStatus.CRASHED.value: "bad",
    RunStatus.INVALID.value: "bad",
    # item and step states
    "queued": "wait",
    "processing": "live",
    "running": "live",
    "completed": "ok",
    "succeeded": "ok",
    "delivered": "ok",
    "pending": "wait",
    "retrying": "warn",
    "retried": "warn",
    "failed": "bad",
    "discarded": "muted",
    "abandoned": "bad",
}


def iso(epoch: float | None) -> str:
    """An epoch time as ISO 8601 in UTC ('' for None)."""
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


def relative(epoch: float | None, now: float | None = None) -> str:
    """``3 min ago``, ``in 2 h``: an epoch time from now."""
    if epoch is None:
        return "—"
    delta = (now if now is not None else time.time()) - epoch
    ahead = delta < 0
    delta = abs(delta)
    if delta < 1:
        text = "now"
        return text
    if delta < 60:
        amount = f"{int(delta)} s"
    elif delta < 3600:
        amount = f"{int(delta // 60)} min"
    elif delta < 86400:
        amount = f"{int(delta // 3600)} h"
    else:
        amount = f"{int(delta // 86400)} d"
    return f"in {amount}" if ahead else f"{amount} ago"


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def time_tag(epoch: float | None) -> Markup:
    """A ``<time>`` showing the relative time, the ISO time as its title and datetime.
    (Built with an f-string: ``Markup.format`` cost a page of 1,000 steps a third of its
    time; the parts are an ISO time, a number and a relative time, none with markup.)"""
    if epoch is None:
        return Markup("—")
    stamp = iso(epoch)
    return Markup(
        f'<time datetime="{stamp}" title="{stamp}" data-epoch="{epoch:.3f}">'
        f"{escape(relative(epoch))}</time>"
    )


@functools.lru_cache(maxsize=256)
def badge(status: str | None) -> Markup:
    """A status badge: the status in words, coloured by family (never by colour alone)."""
    if not status:
        return Markup("")
    family = STATUS_FAMILY.get(status, "muted")
    return Markup(f'<span class="badge badge-{family}">{escape(status)}</span>')


def pretty_json(value: Any) -> str:
    """JSON, indented, for a ``<pre>`` (escaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def error_block(error: Any) -> Markup:
    """An error as people read it: its type and message, the traceback folded away."""
    if not isinstance(error, dict) or "message" not in error:
        return Markup("<pre>{0}</pre>").format(pretty_json(error))
    kind = error.get("type") or error.get("code") or "error"
    html = Markup('<div class="error"><strong>{0}</strong>: {1}').format(kind, error["message"])
    rest = {k: v for k, v in error.items() if k not in ("type", "code", "message", "traceback")}
    if rest or error.get("traceback"):
        html += Markup("<details><summary>Details</summary>")
        if error.get("traceback"):
            html += Markup("<pre>{0}</pre>").format(str(error["traceback"]))
        if rest:
            html += Markup("<pre>{0}</pre>").format(pretty_json(rest))
        html += Markup("</details>")
    return html + Markup("</div>")


def make_environment(static_version: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("runyard.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        iso=iso,
        relative=relative,
        duration=duration,
        time_tag=time_tag,
        badge=badge,
        pretty_json=pretty_json,
        error=error_block,
    )
    env.globals.update(
        nav=NAV,
        static=lambda path: f"/ui/static/{static_version}/{escape(path)}",
    )
    return env


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    viewer: Viewer | None,
    active: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """``template`` rendered with ``context`` and what every page has: ``viewer``,
    ``csrf`` (the session's token, '' signed out), ``can_write``, ``active`` (the nav
    item), ``request``, ``flash`` (a message passed in the query: ``?flash=...``)."""
    env = ui_state(request).templates
    page = env.get_template(template)
    flash = request.query_params.get("flash")
    flash_kind = request.query_params.get("flash_kind", "info")
    values = {
        "request": request,
        "viewer": viewer,
        "csrf": viewer.csrf if viewer is not None else "",
        "can_write": viewer is not None and viewer.can_write,
        "active": active,
        "flash": flash[:500] if flash else None,
        "flash_kind": flash_kind if flash_kind in ("info", "ok", "error") else "info",
        **(context or {}),
    }
    return HTMLResponse(page.render(values), status_code=status_code, headers=headers)


def render_fragment(request: Request, template: str, context: dict[str, Any]) -> str:
    """A partial template as text (for live updates sent over SSE)."""
    return ui_state(request).templates.get_template(template).render(context)
