"""``/ui/runs/{id}``: one run: its input and result or error at the top, the step
timeline (a waterfall with attempts, retries, errors, sleeps and event waits), its items,
outputs (paged), status transitions, events waited on, callback deliveries, credits and
logs; cancel / pause / resume / continue / fork for a write key. The parts that change
while the run runs are rendered by :func:`live_sections` too, which the run's live stream
(:mod:`runyard.ui.live`) sends when they change."""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import InvalidInput, RunNotFound, RunyardError
from ...models import CLIENT_TRANSITIONS, Item, Run
from ...rules import RUN_ID_RE
from ...schemas import StepOut
from ...service import Service
from ..render import render, render_fragment
from ..session import Viewer, ViewerDep, WriterDep
from ..state import ui_state

router = APIRouter()

#: Rows a paged part of the page shows.
ITEMS_PAGE = 50
OUTPUTS_PAGE = 50
LOGS_PAGE = 100
#: The live parts of the page, each an element with ``sse-swap="<name>"``.
LIVE_PARTS = ("summary", "steps", "items", "transitions")
ACTIONS = ("cancel", "pause", "resume", "continue")


@dataclass(frozen=True)
class Segment:
    """A failed attempt on a step's track (percent of the run's span)."""

    left: float
    width: float
    title: str


@dataclass(frozen=True)
class Bar:
    """One step of the waterfall: where its bar starts and how wide it is (percent of
    the run's span), its colour family, and its failed attempts."""

    step: StepOut
    left: float
    width: float
    family: str
    started: float | None
    ended: float | None
    failures: tuple[Segment, ...] = ()

    @property
    def took(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else time.time()) - self.started


def _epoch(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


_FAMILY = {
    "completed": "ok",
    "failed": "bad",
    "retrying": "warn",
    "retried": "warn",
    "waiting": "wait",
}


def _span(steps: list[StepOut], run: Run, now: float) -> tuple[float, float]:
    """The run's time line: from its first start (a step's, an attempt's or its own) to
    its end (or now)."""
    starts = [run.started_at or now]
    ends = [run.finished_at or now]
    for s in steps:
        starts += [t for t in (_epoch(s.started_at),) if t is not None]
        starts += [a.started_at.timestamp() for a in s.failed_attempts]
        ends += [t for t in (_epoch(s.completed_at),) if t is not None]
    origin = min(starts)
    return origin, max(max(ends), origin + 0.001) - origin


def waterfall(run: Run, steps: list[StepOut]) -> list[Bar]:
    """Each step as a bar on the run's time line, with its failed attempts marked on it;
    a step still going (or waiting) reaches to now, one that failed for good to the end of
    its last attempt."""
    now = time.time()
    origin, span = _span(steps, run, now)

    def pct(t: float) -> float:
        return round((t - origin) / span * 100, 3)

    bars = []
    for s in steps:
        started = _epoch(s.started_at)
        ended = _epoch(s.completed_at)
        if s.failed_attempts:
            first = min(a.started_at.timestamp() for a in s.failed_attempts)
            started = first if started is None else min(started, first)
            if ended is None and (run.terminal or s.status != "retrying"):
                ended = max(a.ended_at.timestamp() for a in s.failed_attempts)
        if ended is None and run.terminal:
            ended = run.finished_at
        failures = tuple(
            Segment(
                pct(a.started_at.timestamp()),
                round(max((a.ended_at - a.started_at).total_seconds() / span * 100, 0.4), 3),
                f"attempt {a.attempt} (workflow attempt {a.workflow_attempt}) failed",
            )
            for a in s.failed_attempts
        )
        if started is None:
            left, width = 0.0, 0.0
        else:
            left = pct(started)
            width = ((ended if ended is not None else now) - started) / span * 100
        family = _FAMILY.get(s.status, "live")
        if s.kind in ("sleep", "wait") and s.status != "completed":
            family = "wait"
        bars.append(Bar(s, left, round(max(width, 0.4), 3), family, started, ended, failures))
    return bars


def event_waits(steps: list[StepOut]) -> list[dict[str, Any]]:
    """The run's event waits (``ctx.wait_for_event``) from its step log: the events each
    waited for, and what came (or that it timed out), or until when it waits."""
    out = []
    for s in steps:
        if s.kind != "wait":
            continue
        result = s.result if isinstance(s.result, dict) else {}
        out.append(
            {
                "name": s.name,
                "item": s.item,
                "status": s.status,
                "ids": result.get("ids")
                or ([result["event_id"]] if result.get("event_id") else []),
                "event_id": result.get("event_id"),
                "data": result.get("data"),
                "timed_out": result.get("timed_out"),
                "deadline": result.get("deadline"),
                "since": result.get("began", result.get("since")),
            }
        )
    return out


async def live_sections(
    service: Service,
    request: Request,
    run_id: str,
    viewer: Viewer,
    items_offset: int = 0,
    shown: dict[str, object] | None = None,
) -> tuple[Run, dict[str, str]]:
    """The run now and the HTML of each live part of its page (:data:`LIVE_PARTS`).
    With ``shown`` (what each part showed when last rendered, kept up to date here), only
    the parts whose content changed are rendered (a page of 1,000 steps costs its
    rendering, not its reads)."""
    run = await service.get_run(run_id)
    steps = await service.step_log(run_id)
    items = await service.queue(
        run_id, include_history=True, offset=items_offset, limit=ITEMS_PAGE + 1
    )
    transitions = await service.transitions(run_id)
    now = {
        "summary": (
            run.status,
            run.progress,
            run.progress_message,
            run.waiting_for,
            run.credits,
            run.started_at,
            run.finished_at,
            run.iteration,
            run.lease.worker if run.lease else None,
            repr(run.result),
            repr(run.error),
        ),
        "steps": tuple(
            (s.iteration, s.item, s.position, s.status, s.attempts, s.completed_at, repr(s.result))
            for s in steps
        ),
        "items": tuple((i.idx, i.state, i.attempt, i.waiting_for) for i in items),
        "transitions": len(transitions),
    }
    wanted = [n for n in LIVE_PARTS if shown is None or shown.get(n) != now[n]]
    if shown is not None:
        shown.update(now)
    if not wanted:
        return run, {}
    context = _context(run, steps, items, transitions, viewer, items_offset)
    parts = {name: render_fragment(request, f"_run_{name}.html", context) for name in wanted}
    return run, parts


def _context(
    run: Run,
    steps: list[StepOut],
    items: list[Item],
    transitions: list[Any],
    viewer: Viewer,
    items_offset: int,
) -> dict[str, Any]:
    allowed = {a for a in ACTIONS if run.status in CLIENT_TRANSITIONS[a]}
    return {
        "run": run,
        "steps": steps,
        "bars": waterfall(run, steps),
        "waits": event_waits(steps),
        "items": items[:ITEMS_PAGE],
        "items_offset": items_offset,
        "items_more": len(items) > ITEMS_PAGE,
        "transitions": transitions,
        "allowed": allowed,
        "can_write": viewer.can_write,
        "csrf": viewer.csrf,
        "quoted_id": urllib.parse.quote(run.id, safe=""),
    }


def _int_param(request: Request, name: str, errors: dict[str, str], high: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or int(raw) > high:
        errors[name] = f"{name}: {raw[:30]!r} is not a whole number from 0 to {high}"
        return 0
    return int(raw)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str, viewer: ViewerDep) -> Response:
    service = ui_state(request).service
    errors: dict[str, str] = {}
    items_offset = _int_param(request, "items_offset", errors, 100_000)
    outputs_after = _int_param(request, "outputs_after", errors, 2**62)
    logs_after = _int_param(request, "logs_after", errors, 2**62)
    try:
        if not RUN_ID_RE.match(run_id):
            raise RunNotFound(run_id)
        run, parts = await live_sections(service, request, run_id, viewer, items_offset)
    except RunNotFound:
        return render(
            request,
            "error.html",
            {"title": "No such run", "message": f"No run has the id {run_id[:200]!r}."},
            viewer=viewer,
            active="runs",
            status_code=404,
        )
    outputs = await service.outputs(run_id, after=outputs_after, limit=OUTPUTS_PAGE + 1)
    logs = await service.logs(run_id, after=logs_after or None, limit=LOGS_PAGE + 1)
    deliveries = await service.list_deliveries(run_id, limit=100)
    inputs: list[Item] = []
    if run.input_count > 1:
        inputs = await service.items(run_id, kinds=("input",), limit=20)
    quoted = urllib.parse.quote(run.id, safe="")
    context = {
        "run": run,
        "parts": parts,
        "errors": errors,
        "inputs": inputs,
        "outputs": outputs[:OUTPUTS_PAGE],
        "outputs_next": outputs[OUTPUTS_PAGE - 1].id if len(outputs) > OUTPUTS_PAGE else None,
        "outputs_after": outputs_after,
        "logs": logs[:LOGS_PAGE],
        "logs_next": logs[LOGS_PAGE - 1].id if len(logs) > LOGS_PAGE else None,
        "logs_after": logs_after,
        "deliveries": deliveries,
        "quoted_id": quoted,
        "live_url": f"/ui/live/runs/{quoted}?items_offset={items_offset}",
    }
    return render(
        request,
        "run.html",
        context,
        viewer=viewer,
        active="runs",
        status_code=400 if errors else 200,
    )


def _back(run_id: str, message: str, kind: str = "ok") -> RedirectResponse:
    query = urllib.parse.urlencode({"flash": message, "flash_kind": kind})
    where = f"/ui/runs/{urllib.parse.quote(run_id, safe='')}" if run_id else "/ui/runs"
    return RedirectResponse(f"{where}?{query}", status_code=303)


@router.post("/runs/{run_id}/action")
async def run_action(
    request: Request,
    run_id: str,
    viewer: WriterDep,
    action: Annotated[str, Form(max_length=20)],
) -> Response:
    """Cancel, pause, resume or continue the run; back to its page saying what happened
    (or why not: a run whose status does not allow it)."""
    service = ui_state(request).service
    if not RUN_ID_RE.match(run_id):
        return _back("", f"run_id: {run_id[:40]!r} is not a run id", "error")
    if action not in ACTIONS:
        return _back(run_id, f"action: {action[:40]!r} is not one of {', '.join(ACTIONS)}", "error")
    try:
        if action == "cancel":
            await service.cancel(run_id)
        elif action == "pause":
            await service.pause(run_id)
        elif action == "resume":
            await service.resume(run_id)
        else:
            await service.continue_(run_id)
    except RunyardError as exc:
        return _back(run_id, exc.message, "error")
    done = {"cancel": "Canceled", "pause": "Paused", "resume": "Resumed", "continue": "Continued"}[
        action
    ]
    return _back(run_id, f"{done} run {run_id}")


@router.post("/runs/{run_id}/fork")
async def run_fork(
    request: Request,
    run_id: str,
    viewer: WriterDep,
    from_step: Annotated[str, Form(max_length=200)],
    new_run_id: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A new run from a step of this one (its checkpoints before that step reused); to
    the new run's page."""
    service = ui_state(request).service
    if not RUN_ID_RE.match(run_id):
        return _back("", f"run_id: {run_id[:40]!r} is not a run id", "error")
    step: int | str = int(from_step) if from_step.isascii() and from_step.isdigit() else from_step
    try:
        handle = await service.fork(run_id, step, new_run_id=new_run_id.strip() or None)
    except (InvalidInput, RunyardError) as exc:
        return _back(run_id, exc.message, "error")
    query = urllib.parse.urlencode(
        {"flash": f"Forked from run {run_id} at step {from_step}", "flash_kind": "ok"}
    )
    return RedirectResponse(
        f"/ui/runs/{urllib.parse.quote(handle.id, safe='')}?{query}", status_code=303
    )
