"""``/v1/runs/{id}/deliveries``: a run's callback messages, every attempt of each, and
sending one again (docs/callbacks.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ...schemas import DeliveryAttemptOut, DeliveryList, DeliveryOut
from ...service import Delivery
from ..auth import ApiRoute
from ..state import State
from .common import NOT_FOUND, RunId

router = APIRouter(prefix="/v1", tags=["runs"], route_class=ApiRoute)


def _out(d: Delivery) -> DeliveryOut:
    values: dict[str, Any] = {**d.__dict__}
    values["attempts"] = [DeliveryAttemptOut(**a) for a in d.attempts]
    return DeliveryOut(**values)


@router.get(
    "/runs/{run_id}/deliveries",
    response_model=DeliveryList,
    responses=NOT_FOUND,
    summary="A run's callback deliveries",
)
async def list_deliveries(run_id: RunId, state: State) -> DeliveryList:
    """Every message of the run's callback with each attempt: status code, latency,
    error, and when the next attempt is due."""
    return DeliveryList(data=[_out(d) for d in await state.service.list_deliveries(run_id)])


@router.post(
    "/runs/{run_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    responses=NOT_FOUND,
    summary="Send a callback message again",
)
async def redeliver(
    run_id: RunId,
    delivery_id: Annotated[int, Path(ge=1, le=2**62, description="The delivery's id")],
    state: State,
) -> DeliveryOut:
    """The message is due now again (same ``webhook-id``), whatever its state."""
    await state.service.redeliver(run_id, delivery_id)
    found = [d for d in await state.service.list_deliveries(run_id) if d.id == delivery_id]
    return _out(found[0])
