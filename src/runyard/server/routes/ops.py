"""``/healthz`` (no key: for load balancers and orchestrators) and ``/metrics``."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ... import __version__
from ...schemas import Health
from ...store import Store
from ..auth import ApiRoute
from ..metrics import CONTENT_TYPE
from ..state import State

log = logging.getLogger("runyard.server")
HEALTH_TIMEOUT_S = 3.0

health_router = APIRouter(tags=["ops"])
metrics_router = APIRouter(tags=["ops"], route_class=ApiRoute)


def _probe(store: Store) -> None:
    """One round trip on a connection of its own: the executor's retries would make a
    health check wait for the whole retry window."""
    conn = store.connect()
    try:
        with store.transaction(conn, write=False) as tx:
            store.now(tx)
    finally:
        store.close_connection(conn)


@health_router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database is unreachable"}},
    summary="Health (no API key needed)",
)
async def healthz(state: State) -> JSONResponse:
    store = state.yard.store
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await asyncio.to_thread(_probe, store)
    except Exception as exc:  # any failure to reach the database is "unavailable"
        log.warning("health check: database unavailable: %s", exc)
        body = Health(status="unavailable", database=store.backend, version=__version__)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    return JSONResponse(
        Health(status="ok", database=store.backend, version=__version__).model_dump()
    )


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    summary="Prometheus metrics",
)
async def metrics(state: State) -> Response:
    async with state.metrics.scrape_lock:
        counts = await state.read(state.yard.store.run_counts, state.metrics.last_transition)
        return Response(state.metrics.render(counts), media_type=CONTENT_TYPE)
