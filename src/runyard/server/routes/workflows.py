"""``/v1/workflows``: what workers published (the server never imports user code)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ...models import WorkflowRecord
from ...schemas import WorkerOut, WorkflowList, WorkflowOut, ts
from ..auth import ApiRoute
from ..state import State
from .common import NOT_FOUND

router = APIRouter(prefix="/v1", tags=["workflows"], route_class=ApiRoute)


def workflow_out(record: WorkflowRecord, workers: list[WorkerOut] | None = None) -> WorkflowOut:
    return WorkflowOut(
        name=record.name,
        version=record.version,
        description=record.description,
        input_schema=record.input_schema,
        options=record.options,
        updated_at=ts(record.updated_at),
        workers=workers,
    )


@router.get("/workflows", response_model=WorkflowList, summary="List published workflows")
async def list_workflows(
    state: State,
    all_versions: Annotated[
        bool, Query(description="Every published version, not only the newest of each name")
    ] = False,
) -> WorkflowList:
    records = await state.service.published_workflows(all_versions=all_versions)
    return WorkflowList(items=[workflow_out(r) for r in records])


@router.get(
    "/workflows/{name}",
    response_model=WorkflowOut,
    responses=NOT_FOUND,
    summary="A workflow: input schema, options and the live workers serving it",
)
async def get_workflow(
    name: Annotated[str, Path(max_length=128)],
    state: State,
    version: Annotated[str | None, Query(max_length=64)] = None,
) -> WorkflowOut:
    service = state.service
    record = await service.published_workflow(name, version)
    workers = [
        WorkerOut(
            id=w.id,
            host=w.host,
            pid=w.pid,
            concurrency=w.concurrency,
            heartbeat_at=ts(w.heartbeat_at),
        )
        for w in await service.workers(state.settings.worker_seen_s, serving=record)
    ]
    return workflow_out(record, workers)
