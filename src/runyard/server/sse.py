"""Server-Sent Events of one run (``GET /v1/runs/{id}/events``).

Events: ``status`` (a RunStatusOut) when the status changes, ``progress`` when the
progress or its message changes, ``output`` (an OutputOut, with the output id as the
event id, so a reconnect with ``Last-Event-ID`` resumes after it) for each record
emitted, and ``end`` (the RunOut) once the run is terminal, after its last outputs; then
the stream closes. Comment lines (``: ping``) keep idle connections open.

The hub wakes the stream when the run changes status; progress and outputs are not
announced (they are on the workers' hot path), so the stream also re-reads every
``poll_s`` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from ..errors import RunyardError
from ..models import Run
from ..schemas import OutputOut, RunOut, RunStatusOut
from ..service import wait_event
from .state import ServerState

log = logging.getLogger("runyard.server")
OUTPUT_BATCH = 200
#: The browser's reconnection delay, milliseconds.
RETRY_MS = 2000


def sse_event(event: str, data: Any, event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    # One line of JSON: newlines inside strings are escaped by the encoder.
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return "\n".join(lines) + "\n\n"


async def run_event_stream(
    state: ServerState, request: Request, first: Run, after_output: int = 0
) -> AsyncIterator[str]:
    service = state.service
    run_id = first.id
    poll_s = service.settings.poll_s
    ping_s = state.settings.sse_ping_s
    last_status: str | None = None
    last_progress: tuple[float | None, str | None] = (None, None)
    next_ping = time.monotonic() + ping_s
    run = first
    with service.run_changes(run_id) as changed:
        try:
            yield f"retry: {RETRY_MS}\n\n"
            while True:
                changed.clear()
                if run.status.value != last_status:
                    last_status = run.status.value
                    yield sse_event("status", RunStatusOut.of(run).model_dump(mode="json"))
                progress = (run.progress, run.progress_message)
                if progress != last_progress:
                    last_progress = progress
                    yield sse_event(
                        "progress", {"progress": run.progress, "message": run.progress_message}
                    )
                # Outputs are read after the run: once it is terminal, every output it will
                # ever have is committed, so none can slip in after "end".
                while True:
                    outputs = await service.outputs(run_id, after=after_output, limit=OUTPUT_BATCH)
                    for o in outputs:
                        after_output = o.id
                        yield sse_event(
                            "output", OutputOut.of(o).model_dump(mode="json"), str(o.id)
                        )
                    if len(outputs) < OUTPUT_BATCH:
                        break
                if run.terminal:
                    yield sse_event("end", RunOut.of(run).model_dump(mode="json"))
                    return
                if state.stopping.is_set() or await request.is_disconnected():
                    return
                now = time.monotonic()
                if now >= next_ping:
                    next_ping = now + ping_s
                    yield ": ping\n\n"
                await wait_event(changed, max(0.0, min(poll_s, next_ping - now)))
                run = await service.get_run(run_id)
        except RunyardError as exc:
            # The answer started long ago: report in the stream and end it (the client
            # reconnects with Last-Event-ID).
            log.info("event stream of run %s ended: %s", run_id, exc.message)
            yield sse_event("error", exc.to_dict())
