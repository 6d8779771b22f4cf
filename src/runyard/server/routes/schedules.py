"""``/v1/schedules``: cron and one-off fires of a workflow or a task (issue 20). Thin: the
rules live in :mod:`runyard.service.schedules`; this module parses, calls the service and
shapes its dataclasses. Each change is also a ``POST /v1/schedules/{id}/{action}``
(update, pause, resume, delete, trigger, backfill) for clients without PATCH/DELETE."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from ...engine.registry import FlowControl
from ...rules import ID_MAX
from ...schedule_schemas import (
    Backfilled,
    BackfillIn,
    CallbackIn,
    FireOut,
    PauseIn,
    ScheduleCounters,
    ScheduleIn,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
    TriggerIn,
)
from ...schemas import RunOptions, ts
from ...service import Schedule, ScheduleFire, ScheduleSpec, check_options
from ...service.cron_words import describe_cron
from ..auth import ApiRoute
from ..errors import error_responses
from ..state import ServerState, State
from ..wire import epoch, json_response
from .common import NOT_FOUND, paginated, set_next

router = APIRouter(prefix="/v1", tags=["schedules"], route_class=ApiRoute)

ScheduleId = Annotated[str, Path(max_length=ID_MAX, description="The schedule's id")]
#: The run options of a spec, as ``POST /v1/runs`` names them.
RUN_OPTIONS = tuple(RunOptions.model_fields)
#: Wire fields that are not fields of the spec.
NOT_SPEC = frozenset({"id"})
INVALID = error_responses([404, 422])


def _options(spec: ScheduleSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in RUN_OPTIONS:
        value = getattr(spec, name)
        if isinstance(value, FlowControl):
            value = dataclasses.asdict(value)
        if value is not None:
            out[name] = value
    return out


def fire_out(fire: ScheduleFire) -> FireOut:
    return FireOut(
        fire_at=ts(fire.fire_at),
        kind=fire.kind,
        state=fire.state,
        run_id=fire.run_id,
        outcome=fire.outcome,
        error=fire.error,
        created_at=ts(fire.created_at),
    )


def schedule_out(s: Schedule, *, detail: bool = False) -> ScheduleOut:
    spec = s.spec
    at = spec.at
    return ScheduleOut(
        id=s.id,
        workflow=spec.workflow,
        task_id=spec.task_id,
        input=spec.input,
        cron=spec.cron,
        timezone=spec.timezone,
        at=ts(at) if isinstance(at, int | float) else at,
        description=describe_cron(spec.cron) if spec.cron else None,
        options=_options(spec),
        overlap=spec.overlap,
        catchup_window=spec.catchup_window,
        pause_on_failure=spec.pause_on_failure,
        remaining_actions=s.remaining_actions,
        jitter=spec.jitter,
        callback=CallbackIn.model_validate(spec.callback) if spec.callback else None,
        paused=s.paused,
        note=s.note,
        next_fire_at=ts(s.next_fire_at),
        counters=ScheduleCounters(fired=s.fired, skipped=s.skipped, failed=s.failed),
        created_at=ts(s.created_at),
        updated_at=ts(s.updated_at),
        next_fires=[ts(t) for t in s.next_fires] if detail else None,
        recent_fires=[fire_out(f) for f in s.recent_fires] if detail else None,
    )


def _flow_control(value: Any) -> FlowControl | None:
    if value is None:
        return None
    return FlowControl(
        key=value.key, parallelism=value.parallelism, rate=value.rate, period=value.period
    )


def _spec_fields(body: ScheduleIn | SchedulePatch, given: set[str]) -> dict[str, Any]:
    """The fields ``given`` in the body, as the spec's (times in epoch seconds)."""
    out: dict[str, Any] = {}
    for name in given - NOT_SPEC:
        value = getattr(body, name)
        if name == "at":
            value = epoch(value, "at", "body")
        elif name == "flow_control":
            value = _flow_control(value)
        elif name == "callback" and value is not None:
            value = value.model_dump(mode="json")
        out[name] = value
    return out


@router.post(
    "/schedules",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": ScheduleOut, "description": "Created"},
        200: {"model": ScheduleOut, "description": "A schedule with this id already existed"},
        **INVALID,
    },
    summary="Create a schedule",
)
async def create_schedule(body: ScheduleIn, state: State) -> JSONResponse:
    """A workflow (``workflow`` with ``input``) or a task (``task_id``) fired on a ``cron``
    (in ``timezone``) or once ``at`` a time. 422 names the field for an invalid cron, an
    unknown time zone, an ``at`` in the past, a catch-up window under 10 s, an unknown
    workflow or task."""
    check_options(body)
    fields = _spec_fields(body, set(ScheduleIn.model_fields))
    spec = ScheduleSpec(**fields)
    schedule, created = await state.service.create_schedule(spec, schedule_id=body.id)
    out = schedule_out(schedule, detail=True)
    if not created:
        return json_response(out, 200)
    return json_response(out, 201, {"Location": f"/v1/schedules/{schedule.id}"})


@router.get(
    "/schedules",
    response_model=SchedulePage,
    responses=paginated(SchedulePage),
    summary="List schedules",
)
async def list_schedules(
    state: State,
    response: Response,
    cursor: Annotated[
        str | None, Query(max_length=ID_MAX, description="The last schedule id seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    workflow: Annotated[
        str | None, Query(max_length=128, description="Only this workflow's")
    ] = None,
) -> SchedulePage:
    items, nxt = await state.service.list_schedules(cursor=cursor, limit=limit, workflow=workflow)
    set_next(response, nxt)
    return SchedulePage(items=[schedule_out(s) for s in items], next_cursor=nxt)


@router.get(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    responses=NOT_FOUND,
    summary="Get a schedule (next 10 fire times, last 10 fires, counters)",
)
async def get_schedule(schedule_id: ScheduleId, state: State) -> ScheduleOut:
    return schedule_out(await state.service.get_schedule(schedule_id), detail=True)


async def _update(schedule_id: str, body: SchedulePatch, state: ServerState) -> ScheduleOut:
    check_options(body)
    changes = _spec_fields(body, set(body.model_fields_set))
    if not changes:
        return schedule_out(await state.service.get_schedule(schedule_id), detail=True)
    return schedule_out(await state.service.update_schedule(schedule_id, changes), detail=True)


UPDATE_DOC = (
    "The fields given replace the stored ones, from the next fire on (a run already started "
    "goes on as it was); a new cron, `at` or timezone recomputes the next fire from now"
)


@router.patch(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    responses=INVALID,
    summary="Update a schedule",
    description=UPDATE_DOC,
)
async def patch_schedule(schedule_id: ScheduleId, body: SchedulePatch, state: State) -> ScheduleOut:
    return await _update(schedule_id, body, state)


@router.post(
    "/schedules/{schedule_id}/update",
    response_model=ScheduleOut,
    responses=INVALID,
    summary="Update a schedule (as PATCH)",
    description=UPDATE_DOC,
)
async def update_schedule(
    schedule_id: ScheduleId, body: SchedulePatch, state: State
) -> ScheduleOut:
    return await _update(schedule_id, body, state)


@router.post(
    "/schedules/{schedule_id}/pause",
    response_model=ScheduleOut,
    responses=NOT_FOUND,
    summary="Pause a schedule",
)
async def pause_schedule(
    schedule_id: ScheduleId, state: State, body: PauseIn | None = None
) -> ScheduleOut:
    """No fire until it is resumed; ``note`` says why (shown with it)."""
    note = body.note if body is not None else None
    return schedule_out(await state.service.pause_schedule(schedule_id, note), detail=True)


@router.post(
    "/schedules/{schedule_id}/resume",
    response_model=ScheduleOut,
    responses=NOT_FOUND,
    summary="Resume a schedule",
)
async def resume_schedule(
    schedule_id: ScheduleId, state: State, body: PauseIn | None = None
) -> ScheduleOut:
    """It fires again from its next fire time after now (fires missed while paused are
    not made up)."""
    note = body.note if body is not None else None
    return schedule_out(await state.service.resume_schedule(schedule_id, note), detail=True)


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete a schedule (its runs stay)",
)
async def delete_schedule(schedule_id: ScheduleId, state: State) -> Response:
    await state.service.delete_schedule(schedule_id)
    return Response(status_code=204)


@router.post(
    "/schedules/{schedule_id}/delete",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete a schedule (as DELETE; its runs stay)",
)
async def delete_schedule_post(schedule_id: ScheduleId, state: State) -> Response:
    await state.service.delete_schedule(schedule_id)
    return Response(status_code=204)


@router.post(
    "/schedules/{schedule_id}/trigger",
    response_model=FireOut,
    responses=INVALID,
    summary="Fire a schedule now",
)
async def trigger_schedule(
    schedule_id: ScheduleId, state: State, body: TriggerIn | None = None
) -> FireOut:
    """One fire now (also when paused), under ``overlap`` (default: the schedule's): the
    fire, with the run it started, or ``skipped`` by the policy."""
    overlap = body.overlap if body is not None else None
    return fire_out(await state.service.trigger_schedule(schedule_id, overlap=overlap))


@router.post(
    "/schedules/{schedule_id}/backfill",
    response_model=Backfilled,
    responses=INVALID,
    summary="Fire a past range",
)
async def backfill_schedule(schedule_id: ScheduleId, body: BackfillIn, state: State) -> Backfilled:
    """Every fire time of ``[start, end)``, each started once: asking again for the same
    range starts nothing new (its fires are answered as they are)."""
    start = epoch(body.start, "start", "body")
    end = epoch(body.end, "end", "body")
    assert start is not None and end is not None
    done = await state.service.backfill_schedule(schedule_id, start, end, overlap=body.overlap)
    return Backfilled(
        fires=[fire_out(f) for f in done.fires], created=done.created, existing=done.existing
    )
