"""``/v1/events``: notify an event (waking the runs waiting for it) and list waiters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path

from ...rules import EVENT_ID_MAX
from ...schemas import Notified, NotifyIn, WaiterList, WaiterOut
from ..auth import ApiRoute
from ..errors import error_responses
from ..state import State

router = APIRouter(prefix="/v1", tags=["events"], route_class=ApiRoute)

EventId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=EVENT_ID_MAX,
        pattern=r"^[^\x00-\x1f]+$",
        description="The event's id: printable characters, `/` allowed; percent-encoded "
        "bytes must be UTF-8. A notified id cannot end in `/waiters` (that path lists the "
        "waiters: GET only)",
    ),
]
#: The end of the waiters path, which a notify cannot take as part of an id.
WAITERS = "/waiters"


@router.post(
    "/events/{event_id:path}",
    response_model=Notified,
    # The id may contain "/" (e.g. "approve/order-7"): the rest of the path is the id.
    responses=error_responses([404]),
    summary="Notify an event",
)
async def notify(
    event_id: EventId, state: State, body: Annotated[NotifyIn | None, Body()] = None
) -> Notified:
    """The event is stored first, so a wait that starts shortly after still receives it
    (within the lookback window); the answer lists the runs woken now."""
    if event_id.endswith(WAITERS):
        # POST on the waiters list: the list answers GET only (405), no event
        # "x/waiters" is notified.
        raise HTTPException(405, "the waiters of an event are read with GET", {"Allow": "GET"})
    woken = await state.service.notify(event_id, body.data if body is not None else None)
    return Notified(event_id=event_id, woken=woken)


@router.get(
    "/events/{event_id:path}/waiters",
    response_model=WaiterList,
    responses=error_responses([404]),
    summary="Runs waiting for an event",
)
async def waiters(event_id: EventId, state: State) -> WaiterList:
    return WaiterList(items=[WaiterOut.of(w) for w in await state.service.waiters(event_id)])
