"""``/v1/workflows``: what workers published (the server never imports user code)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ... import jsonutil
from ...errors import WorkflowNotFound
from ...schemas import WorkerOut, WorkflowList, WorkflowOut, ts
from ...store.tx import Row
from ..auth import ApiRoute
from ..state import State
from .common import NOT_FOUND

router = APIRouter(prefix="/v1", tags=["workflows"], route_class=ApiRoute)


def workflow_out(row: Row, workers: list[WorkerOut] | None = None) -> WorkflowOut:
    schema = jsonutil.loads(row["input_schema"])
    options = jsonutil.loads(row["options"])
    return WorkflowOut(
        name=row["name"],
        version=row["version"],
        description=row["description"],
        input_schema=schema if isinstance(schema, dict) else {},
        options=options if isinstance(options, dict) else {},
        updated_at=ts(row["updated_at"]),
        workers=workers,
    )


@router.get("/workflows", response_model=WorkflowList, summary="List published workflows")
async def list_workflows(
    state: State,
    all_versions: Annotated[
        bool, Query(description="Every published version, not only the newest of each name")
    ] = False,
) -> WorkflowList:
    rows = await state.read(state.yard.store.list_workflows)
    items: list[WorkflowOut] = []
    seen: set[str] = set()
    for row in rows:  # ordered by name, newest version first
        if not all_versions and row["name"] in seen:
            continue
        seen.add(row["name"])
        items.append(workflow_out(row))
    return WorkflowList(items=items)


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
    store = state.yard.store
    row = await state.read(store.get_workflow, name, version)
    if row is None:
        what = f"{name!r} version {version!r}" if version else repr(name)
        raise WorkflowNotFound(f"no workflow {what} is published")
    ref = f"{row['name']}@{row['version']}"
    workers = [
        WorkerOut(
            id=w["id"],
            host=w["host"],
            pid=w["pid"],
            concurrency=w["concurrency"],
            heartbeat_at=ts(w["heartbeat_at"]),
        )
        for w in await state.read(store.live_workers, state.settings.worker_seen_s)
        if ref in (jsonutil.loads(w["workflows"]) or [])
    ]
    return workflow_out(row, workers)
