"""``/v1/usage``: credits recorded by ``ctx.charge`` over a period."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ...errors import InvalidInput
from ...schemas import UsageOut, UsageRow, ts
from ..auth import ApiRoute
from ..state import State
from ..wire import MIN_EPOCH, epoch

router = APIRouter(prefix="/v1", tags=["usage"], route_class=ApiRoute)

DEFAULT_PERIOD_S = 30 * 86400


@router.get("/usage", response_model=UsageOut, summary="Credits by action, workflow and day")
async def usage(
    state: State,
    since: Annotated[datetime | None, Query(description="Start (default: until - 30 days)")] = None,
    until: Annotated[datetime | None, Query(description="End, exclusive (default: now)")] = None,
    workflow: Annotated[str | None, Query(max_length=128)] = None,
) -> UsageOut:
    end = epoch(until, "until")
    if end is None:
        end = time.time()
    start = epoch(since, "since")
    if start is None:
        start = max(MIN_EPOCH, end - DEFAULT_PERIOD_S)
    if start >= end:
        raise InvalidInput(
            "since must be before until",
            details=[{"field": "since", "in": "query", "error": "not before until"}],
        )
    rows = await state.read(state.yard.store.usage, start, end, workflow)
    by_action: dict[str, float] = defaultdict(float)
    by_workflow: dict[str, float] = defaultdict(float)
    by_day: dict[str, float] = defaultdict(float)
    out = []
    for r in rows:
        credits = float(r["credits"])
        by_action[r["action"]] += credits
        by_workflow[r["workflow"]] += credits
        by_day[r["day"]] += credits
        out.append(
            UsageRow(
                day=r["day"],
                workflow=r["workflow"],
                action=r["action"],
                credits=credits,
                charges=int(r["charges"]),
            )
        )
    return UsageOut(
        since=ts(start),
        until=ts(end),
        total=sum(by_action.values()),
        by_action=dict(by_action),
        by_workflow=dict(by_workflow),
        by_day=dict(by_day),
        rows=out,
    )
