"""The requests of ``/v1/schedules``, built once for both clients (``Client`` and
``AsyncClient`` send them): each function answers a :class:`~._base.Call`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..schedule_schemas import Backfilled, FireOut, ScheduleOut, SchedulePage
from ._base import Call, _body, _jsonable, _model, _params, _parse_none, _seg
from ._types import UNSET, ScheduleChanges, ScheduleOptions

PATH = "/v1/schedules"


def _flat(given: dict[str, Any]) -> dict[str, Any]:
    """The run options (``options``) as fields of the body, as ``POST /v1/runs`` has them."""
    options = given.pop("options", None)
    if options is not None:
        given.update(_jsonable(options))
    return given


def create(
    workflow: str | None,
    input: Any,
    cron: str | None,
    at: datetime | str | None,
    options: ScheduleOptions,
) -> Call[ScheduleOut]:
    given = _flat(dict(options))
    schedule_id = given.pop("schedule_id", None)
    body = _body(id=schedule_id, workflow=workflow, input=input, cron=cron, at=at, **given)
    return Call("POST", PATH, _model(ScheduleOut), body=body, idempotent=schedule_id is not None)


def list_(cursor: str | None, limit: int | None) -> Call[SchedulePage]:
    return Call(
        "GET",
        PATH,
        _model(SchedulePage),
        params=_params(cursor=cursor, limit=limit),
        idempotent=True,
    )


def get(schedule_id: str) -> Call[ScheduleOut]:
    return Call("GET", f"{PATH}/{_seg(schedule_id)}", _model(ScheduleOut), idempotent=True)


def update(schedule_id: str, changes: ScheduleChanges) -> Call[ScheduleOut]:
    # None is a value here (clear the input, the limit of actions): only absent leaves it
    body = {k: _jsonable(v) for k, v in _flat(dict(changes)).items() if v is not UNSET}
    return Call(
        "PATCH", f"{PATH}/{_seg(schedule_id)}", _model(ScheduleOut), body=body, idempotent=True
    )


def pause(schedule_id: str, note: str | None) -> Call[ScheduleOut]:
    return Call(
        "POST",
        f"{PATH}/{_seg(schedule_id)}/pause",
        _model(ScheduleOut),
        body=_body(note=note),
        idempotent=True,
    )


def resume(schedule_id: str) -> Call[ScheduleOut]:
    return Call(
        "POST", f"{PATH}/{_seg(schedule_id)}/resume", _model(ScheduleOut), body={}, idempotent=True
    )


def delete(schedule_id: str) -> Call[None]:
    return Call("DELETE", f"{PATH}/{_seg(schedule_id)}", _parse_none, idempotent=True)


def trigger(schedule_id: str, overlap: str | None) -> Call[FireOut]:
    return Call(
        "POST",
        f"{PATH}/{_seg(schedule_id)}/trigger",
        _model(FireOut),
        body=_body(overlap=overlap),
    )


def backfill(
    schedule_id: str, start: datetime | str, end: datetime | str, overlap: str | None
) -> Call[Backfilled]:
    return Call(
        "POST",
        f"{PATH}/{_seg(schedule_id)}/backfill",
        _model(Backfilled),
        body=_body(start=start, end=end, overlap=overlap),
        idempotent=True,  # a backfill asked twice starts nothing more
    )
