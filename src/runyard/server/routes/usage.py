"""``/v1/usage``: credits recorded by ``ctx.charge`` over a period."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ...schemas import RUN_ID_PATTERN, UsageOut, UsageRow, ts
from ..auth import ApiRoute
from ..state import State
from ..wire import MIN_EPOCH, epoch
from .common import NOT_FOUND

router = APIRouter(prefix="/v1", tags=["usage"], route_class=ApiRoute)


@router.get(
    "/usage",
    response_model=UsageOut,
    responses=NOT_FOUND,
    summary="Credits by action, workflow and day",
)
async def usage(
    state: State,
    since: Annotated[datetime | None, Query(description="Start (default: until - 30 days)")] = None,
    until: Annotated[datetime | None, Query(description="End, exclusive (default: now)")] = None,
    workflow: Annotated[str | None, Query(max_length=128)] = None,
    run_id: Annotated[
        str | None,
        Query(
            pattern=RUN_ID_PATTERN,
            description="Only this run's credits (since its start when `since` is not given)",
        ),
    ] = None,
) -> UsageOut:
    """404 for a ``run_id`` that names no run."""
    report = await state.service.usage(
        since=epoch(since, "since"),
        until=epoch(until, "until"),
        workflow=workflow,
        earliest=MIN_EPOCH,
        run_id=run_id,
    )
    return UsageOut(
        since=ts(report.since),
        until=ts(report.until),
        total=report.total,
        by_action=report.by_action,
        by_workflow=report.by_workflow,
        by_day=report.by_day,
        rows=[
            UsageRow(
                day=line.day,
                workflow=line.workflow,
                action=line.action,
                credits=line.credits,
                charges=line.charges,
            )
            for line in report.lines
        ],
    )
