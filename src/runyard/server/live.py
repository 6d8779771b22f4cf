"""Starting runs and waiting for them: ``POST /v1/runs`` and ``/v1/tasks/{id}/execute``
(async and live modes) and the long-poll of ``/v1/runs/{id}/result``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ..app import RunHandle
from ..engine.registry import FlowControl
from ..errors import CapacityExceeded, InvalidInput, RunNotFound, Timeout
from ..models import Run
from ..schemas import InputIn, LiveRunOut, OutputOut, RunOptions, RunOut, RunStatusOut
from ..store import Store
from ..store.tx import Tx
from .state import ServerState
from .wire import INT32_MAX, PAGINATION_HEADER, epoch, json_response, run_location

#: Outputs in a live answer (the rest through ``/outputs`` from ``next_cursor``).
LIVE_OUTPUTS = 100


def check_options(options: RunOptions, prefix: str = "") -> None:
    """Bounds the wire model leaves open but the database has (32-bit columns)."""
    for name, value in (
        ("max_results", options.max_results),
        ("flow_control.parallelism", options.flow_control and options.flow_control.parallelism),
        ("flow_control.rate", options.flow_control and options.flow_control.rate),
    ):
        if isinstance(value, int) and value > INT32_MAX:
            raise InvalidInput(
                f"{prefix}{name} must be at most {INT32_MAX}",
                details=[{"field": prefix + name, "in": "body", "error": f"at most {INT32_MAX}"}],
            )


def start_options(
    options: RunOptions,
    *,
    input: Any,
    inputs: list[InputIn] | None,
    custom_data: Any,
    run_id: str | None,
    mode: str,
    version: str | None = None,
    delay: float | None = None,
    not_before: datetime | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``Runyard.start`` for a trigger over the wire."""
    if inputs is not None and custom_data is not None:
        raise InvalidInput(
            "with inputs, give custom_data inside each entry",
            details=[{"field": "custom_data", "in": "body", "error": "not allowed with inputs"}],
        )
    check_options(options)
    fc = options.flow_control
    return {
        "input": input,
        "inputs": [{"input": i.input, "custom_data": i.custom_data} for i in inputs]
        if inputs is not None
        else None,
        "custom_data": custom_data,
        "run_id": run_id,
        "mode": mode,
        "priority": options.priority,
        "delay": delay,
        "not_before": epoch(not_before, "not_before", "body"),
        "flow_control": FlowControl(
            key=fc.key, parallelism=fc.parallelism, rate=fc.rate, period=fc.period
        )
        if fc is not None
        else None,
        "retries": options.retries,
        "timeout": options.timeout,
        "sync_mode": options.sync_mode,
        "max_results": options.max_results,
        "task_id": task_id,
        "version": version,
    }


async def start_and_answer(
    state: ServerState,
    request: Request,
    workflow: str,
    kwargs: dict[str, Any],
    wait_timeout: float | None,
) -> JSONResponse:
    """Start a run and answer as ``POST /v1/runs`` does: async 201 (200 when ``run_id``
    already existed); live 200 with the result, 202 past the wait, 429 without capacity.
    Every refusal happens before the run is written."""
    yard = state.yard
    if kwargs["mode"] != "live":
        handle = await yard.start(workflow, **kwargs)
        if handle.created:
            state.metrics.runs_created.labels(workflow, "async").inc()
        run = handle.initial or await yard.get_run(handle.id)
        return json_response(RunOut.of(run), 201 if handle.created else 200, run_location(run.id))
    with state.live.slot():
        await _check_flow_capacity(state, workflow, kwargs)
        handle = await yard.start(workflow, **kwargs)
        if handle.created:
            state.metrics.runs_created.labels(workflow, "live").inc()
        wait_s = wait_timeout if wait_timeout is not None else state.settings.live_wait_s
        done = await wait_terminal(state, request, handle.id, wait_s, handle)
        if done is None:
            current = await yard.get_run(handle.id)
            return json_response(RunStatusOut.of(current), 202, run_location(current.id))
        outputs = await yard.outputs(done.id, after=0, limit=LIVE_OUTPUTS + 1)
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


async def _check_flow_capacity(state: ServerState, workflow: str, kwargs: dict[str, Any]) -> None:
    """Live mode only: a run whose flow-control key is saturated would just sit QUEUED
    while the client waits, so it is refused (429) instead. A hint, not a reservation:
    another process may take the slot between this check and the claim."""
    run_id = kwargs.get("run_id")
    if run_id is not None:
        with contextlib.suppress(RunNotFound):
            await state.yard.get_run(run_id)
            return  # an idempotent retry starts nothing new
    fc: FlowControl | None = kwargs.get("flow_control")
    if fc is None:
        # (What start() takes too: no read of the workflow's record per request.)
        defaults = await state.yard.run_defaults(workflow, kwargs.get("version"))
        if defaults is None:
            return  # start() names the unknown workflow
        fc = defaults.flow_control
    key = fc.key if fc is not None else None
    if key is None:
        return
    wait_s = await state.read(functools.partial(flow_wait_txn, state.yard.store), key)
    if wait_s is not None:
        raise CapacityExceeded(
            f"flow-control key {key!r} has no capacity right now; retry shortly",
            retry_after=wait_s,
            details={"flow_key": key},
        )


def flow_wait_txn(store: Store, tx: Tx, key: str) -> float | None:
    """None when ``key`` could start one more item now, else the seconds to wait.
    (Uses the store's capacity check, which is private to it today.)"""
    if store._flow_capacity_txn(tx, key, 1) > 0:
        return None
    row = tx.q1("flow_retry_in", {"key": key})
    wait_s = float(row["wait_s"]) if row and row["wait_s"] is not None else 1.0
    return max(1.0, wait_s)


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
        run = await state.yard.get_run(run_id)
        return run if run.terminal else None
    waiting = handle.wait(timeout) if handle is not None else state.yard.wait(run_id, timeout)
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
