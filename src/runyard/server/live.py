"""Starting runs and waiting for them: ``POST /v1/runs`` and ``/v1/tasks/{id}/execute``
(async and live modes) and the long-poll of ``/v1/runs/{id}/result``."""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import JSONResponse

from ..errors import Timeout
from ..models import Run
from ..schemas import LiveRunOut, OutputOut, RunOut, RunStatusOut
from ..service import RunHandle, StartRequest
from .state import ServerState
from .wire import PAGINATION_HEADER, json_response, run_location

#: Outputs in a live answer (the rest through ``/outputs`` from ``next_cursor``).
LIVE_OUTPUTS = 100


async def start_and_answer(
    state: ServerState, request: Request, req: StartRequest, wait_timeout: float | None
) -> JSONResponse:
    """Start a run and answer as ``POST /v1/runs`` does: async 201 (200 when ``run_id``
    already existed); live 200 with the result, 202 past the wait, 429 without capacity.
    Every refusal happens before the run is written."""
    service = state.service
    if req.mode != "live":
        handle = await service.start_run(req)
        if handle.created:
            state.metrics.runs_created.labels(req.workflow, "async").inc()
        run = handle.initial or await service.get_run(handle.id)
        return json_response(RunOut.of(run), 201 if handle.created else 200, run_location(run.id))
    with state.live.slot():
        await service.check_capacity(req)
        handle = await service.start_run(req)
        if handle.created:
            state.metrics.runs_created.labels(req.workflow, "live").inc()
        wait_s = wait_timeout if wait_timeout is not None else state.settings.live_wait_s
        done = await wait_terminal(state, request, handle.id, wait_s, handle)
        if done is None:
            current = await service.get_run(handle.id)
            return json_response(RunStatusOut.of(current), 202, run_location(current.id))
        outputs = await service.outputs(done.id, after=0, limit=LIVE_OUTPUTS + 1)
        more = len(outputs) > LIVE_OUTPUTS
        outputs = outputs[:LIVE_OUTPUTS]
        cursor = str(outputs[-1].id) if more else None
        body = LiveRunOut(
            run=RunOut.of(done), outputs=[OutputOut.of(o) for o in outputs], next_cursor=cursor
        )
        headers = run_location(done.id)
        if cursor is not None:
            headers[PAGINATION_HEADER] = cursor
        return json_response(body, 200, headers)


async def _until_disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def wait_terminal(
    state: ServerState,
    request: Request,
    run_id: str,
    timeout: float,
    handle: RunHandle | None = None,
) -> Run | None:
    """The run once terminal, or None if it is still going after ``timeout`` seconds,
    the client went away, or the server is stopping. Woken by the hub the moment the run
    changes (in this process or, through LISTEN/NOTIFY or the SQLite watcher, another).
    ``handle``: the run's handle from :meth:`Runyard.start`, if this request started it."""
    if timeout <= 0:
        run = await state.service.get_run(run_id)
        return run if run.terminal else None
    waiting = handle.wait(timeout) if handle is not None else state.service.wait(run_id, timeout)
    waiter = asyncio.ensure_future(waiting)
    others = [
        asyncio.ensure_future(_until_disconnected(request)),
        asyncio.ensure_future(state.stopping.wait()),
    ]
    try:
        await asyncio.wait([waiter, *others], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in others:
            task.cancel()
        if not waiter.done():
            waiter.cancel()
        await asyncio.gather(waiter, *others, return_exceptions=True)
    if waiter.cancelled():
        return None
    try:
        return waiter.result()
    except Timeout:
        return None
