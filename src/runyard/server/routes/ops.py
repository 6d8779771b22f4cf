"""``/healthz`` (no key: for load balancers and orchestrators) and ``/metrics``."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ... import __version__
from ...schemas import Health
from ..auth import ApiRoute
from ..metrics import CONTENT_TYPE
from ..state import State

log = logging.getLogger("runyard.server")
HEALTH_TIMEOUT_S = 3.0

health_router = APIRouter(tags=["ops"])
metrics_router = APIRouter(tags=["ops"], route_class=ApiRoute)


@health_router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database is unreachable"}},
    summary="Health (no API key needed)",
)
async def healthz(state: State) -> JSONResponse:
    service = state.service
    backend = service.backend
    try:
        await service.probe(HEALTH_TIMEOUT_S)
    except Exception as exc:  # any failure to reach the database is "unavailable"
        log.warning("health check: database unavailable: %s", exc)
        body = Health(status="unavailable", database=backend, version=__version__)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    return JSONResponse(Health(status="ok", database=backend, version=__version__).model_dump())


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
        counts = await state.service.run_counts(state.metrics.last_transition)
        return Response(state.metrics.render(counts), media_type=CONTENT_TYPE)
