"""``AsyncClient``: the Runyard HTTP API for asyncio code (I/O over ``httpx.AsyncClient``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar, Unpack, overload

import httpx

from ..schedule_schemas import Backfilled, FireOut, ScheduleOut, SchedulePage
from ..schemas import (
    Canceled,
    DeliveryOut,
    Health,
    InputOut,
    LiveRunOut,
    LogOut,
    LogPage,
    Notified,
    OutputOut,
    OutputPage,
    QueuePage,
    RunOptions,
    RunOut,
    RunPage,
    RunStatusOut,
    StepOut,
    TaskOut,
    TaskPage,
    TransitionOut,
    UsageOut,
    WaiterOut,
    WorkflowOut,
)
from ..telemetry.carrier import with_current_trace
from . import _schedules
from ._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    BaseClient,
    Busy,
    Call,
    RunStartResult,
    error_from_response,
)
from ._sse import RunEvent, SSEDecoder
from ._types import (
    UNSET,
    ExecuteOptions,
    Overlap,
    RunFilters,
    ScheduleChanges,
    ScheduleOptions,
    StartOptions,
)

T = TypeVar("T")


class AsyncClient(BaseClient):
    """The Runyard HTTP API for asyncio code::

        async with AsyncClient() as client:       # RUNYARD_URL, RUNYARD_API_KEY
            run = await client.start_run("enrich_companies", {"domain": "acme.com"})
            save(run.id)                          # ... the process may restart here ...
            result = await client.result(run.id, timeout=60)

    Errors are the classes of :mod:`runyard.errors` (``RunNotFound``, ``InvalidInput``,
    ``IllegalTransition``, ...), raised from the server's error body."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            headers=headers,
        )
        self._http = http_client or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    self._url(call),
                    params=tuple(call.params),
                    json=call.json,
                    headers=with_current_trace(self.headers),  # the caller's trace, if any
                    timeout=self._timeout(call),
                )
            except httpx.TransportError as exc:
                delay = self._retry_error(call, exc, attempt)
                if delay is None:
                    raise self._unreachable(exc) from exc
            else:
                delay = self._retry_response(call, response, attempt)
                if delay is None:
                    return call.parse(response)
            await asyncio.sleep(delay)
            attempt += 1

    # -- health and workflows --------------------------------------------------------------

    async def health(self) -> Health:
        """``GET /healthz`` (no key needed)."""
        return await self._send(self._health())

    async def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        return await self._send(self._metrics())

    async def list_workflows(self) -> list[WorkflowOut]:
        return await self._send(self._list_workflows())

    async def get_workflow(self, name: str) -> WorkflowOut:
        """A workflow with its input schema, options and the workers serving it."""
        return await self._send(self._get_workflow(name))

    # -- starting runs and waiting for them ------------------------------------------------

    @overload
    async def start_run(
        self,
        workflow: str | None,
        input: Any = None,
        *,
        mode: Literal["async"] = "async",
        **options: Unpack[StartOptions],
    ) -> RunOut: ...

    @overload
    async def start_run(
        self,
        workflow: str | None,
        input: Any = None,
        *,
        mode: Literal["live"],
        **options: Unpack[StartOptions],
    ) -> LiveRunOut | RunStatusOut: ...

    async def start_run(
        self,
        workflow: str | None,
        input: Any = None,
        *,
        mode: Literal["async", "live"] = "async",
        **options: Unpack[StartOptions],
    ) -> RunStartResult:
        """Start a run of ``workflow`` with ``input`` (or ``inputs=[...]``); or, with
        ``workflow=None`` and ``url={"url": ..., "method": ..., "headers": ..., "body":
        ..., "timeout": ...}``, an HTTP-target run that calls that URL.

        ``mode="async"`` (the default) answers at once with the run. ``mode="live"``
        waits up to ``wait_timeout`` seconds and answers with the run and the first page
        of its outputs, or with its status if it is still going. Without ``run_id`` the
        client picks one, so a retried request never starts a second run."""
        return await self._send(self._start_run(workflow, input, mode, options))

    async def get_run(self, run_id: str) -> RunOut:
        return await self._send(self._get_run(run_id))

    async def get_status(self, run_id: str) -> RunStatusOut:
        """The lightweight view, for polling."""
        return await self._send(self._get_status(run_id))

    async def get_result(self, run_id: str, timeout: float | None = None) -> RunOut | RunStatusOut:
        """The run once it is terminal (``RunOut``); waits up to ``timeout`` seconds on the
        server, then answers with its status (``RunStatusOut``) if it is still going."""
        return await self._send(self._get_result(run_id, timeout))

    async def wait_for_completion(self, run_id: str, timeout: float | None = None) -> RunOut:
        """The run once it is terminal, whatever its status; :class:`runyard.Timeout` if
        it is still going after ``timeout`` seconds (``None``: wait as long as it takes).
        A server too busy for the wait (429, 503) is asked again after its
        ``Retry-After``, until ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        refusals = 0
        while True:
            answer = await self._send(self._poll_result(run_id, deadline))
            if isinstance(answer, RunOut):
                return answer
            pause = self._pause_s(run_id, answer, refusals, deadline, timeout)
            refusals = refusals + 1 if isinstance(answer, Busy) else 0
            if pause > 0:
                await asyncio.sleep(pause)

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        """The run's result once it succeeded; :class:`runyard.RunFailed` if it ended
        without one, :class:`runyard.Timeout` after ``timeout`` seconds."""
        return self._result_of(await self.wait_for_completion(run_id, timeout))

    # -- reading runs ----------------------------------------------------------------------

    async def list_runs(
        self, *, cursor: str | None = None, **filters: Unpack[RunFilters]
    ) -> RunPage:
        """One page of runs; pass ``next_cursor`` back as ``cursor`` for the next."""
        return await self._send(self._list_runs(cursor, filters))

    async def iter_runs(self, **filters: Unpack[RunFilters]) -> AsyncIterator[RunOut]:
        """Every run matching ``filters``, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_runs(cursor=cursor, **filters)
            for run in page.items:
                yield run
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def inputs(self, run_id: str) -> list[InputOut]:
        """Each input of the run with its state, result and error."""
        return await self._send(self._inputs(run_id))

    async def outputs(
        self, run_id: str, *, cursor: str | None = None, limit: int | None = None
    ) -> OutputPage:
        """One page of the run's outputs (``next_cursor`` from ``X-Pagination-Next``)."""
        return await self._send(self._outputs(run_id, cursor, limit))

    async def logs(
        self, run_id: str, *, after: int | str | None = None, limit: int | None = None
    ) -> LogPage:
        """One page of what the run logged through ``ctx.logger``, oldest first: up to
        ``limit`` lines after the line with id ``after`` (the page's ``next_cursor``)."""
        return await self._send(self._logs(run_id, after, limit))

    async def iter_logs(
        self, run_id: str, *, after: int | str | None = None, limit: int | None = None
    ) -> AsyncIterator[LogOut]:
        """Every line the run logged so far, following ``X-Pagination-Next``."""
        while True:
            page = await self.logs(run_id, after=after, limit=limit)
            for line in page.items:
                yield line
            if not page.next_cursor or not page.items:
                return
            after = page.next_cursor

    async def iter_outputs(
        self, run_id: str, *, cursor: str | None = None, limit: int | None = None
    ) -> AsyncIterator[OutputOut]:
        """Every output of the run so far, following ``X-Pagination-Next``."""
        while True:
            page = await self.outputs(run_id, cursor=cursor, limit=limit)
            for output in page.items:
                yield output
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def queue(
        self,
        run_id: str,
        *,
        offset: int | None = None,
        limit: int | None = None,
        state: str | None = None,
        include_history: bool | None = None,
    ) -> QueuePage:
        """The run's items (its inputs and the elements it fanned out)."""
        return await self._send(self._queue(run_id, offset, limit, state, include_history))

    async def steps(self, run_id: str) -> list[StepOut]:
        """The step log: names, attempts, times, errors."""
        return await self._send(self._steps(run_id))

    async def transitions(self, run_id: str) -> list[TransitionOut]:
        """Every status change of the run with its time, oldest first."""
        return await self._send(self._transitions(run_id))

    async def stream_events(
        self, run_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[RunEvent]:
        """The run's Server-Sent Events (``status``, ``progress``, ``output``) as they
        happen, until ``end``; a dropped connection is resumed with ``Last-Event-ID``."""
        decoder = SSEDecoder()
        decoder.last_event_id = last_event_id
        call = self._events(run_id)
        attempt = 0
        while True:
            try:
                async with self._http.stream(
                    "GET",
                    self._url(call),
                    headers=self._events_headers(decoder.last_event_id),
                    timeout=httpx.Timeout(self.timeout, read=None),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        delay = self._retry_response(call, response, attempt)
                        if delay is None:
                            raise error_from_response(response)
                    else:
                        async for line in response.aiter_lines():
                            event = decoder.feed(line)
                            if event is None:
                                continue
                            attempt = 0
                            yield event
                            if event.event == "end":
                                return
                        delay = self._reconnect_s(attempt)
                        if delay is None:
                            return
            except httpx.TransportError as exc:
                delay = self._retry_error(call, exc, attempt)
                if delay is None:
                    raise self._unreachable(exc) from exc
            await asyncio.sleep(delay)
            attempt += 1

    # -- changing runs ---------------------------------------------------------------------

    async def cancel(self, run_id: str) -> RunOut:
        return await self._send(self._action(run_id, "cancel"))

    async def list_deliveries(self, run_id: str) -> list[DeliveryOut]:
        """The run's callback messages, each with every attempt (status code, latency,
        error) and its next attempt's time."""
        return (await self._send(self._deliveries(run_id))).data

    async def redeliver(self, run_id: str, delivery_id: int) -> DeliveryOut:
        """Send a callback message again now (same ``webhook-id``)."""
        return await self._send(self._redeliver(run_id, delivery_id))

    async def pause(self, run_id: str) -> RunOut:
        """Stop the run at its next step boundary, holding no worker."""
        return await self._send(self._action(run_id, "pause"))

    async def resume(self, run_id: str) -> RunOut:
        """Continue a PAUSED, FAILED, CANCELED or CRASHED run from its last checkpoint."""
        return await self._send(self._action(run_id, "resume"))

    async def continue_(self, run_id: str) -> RunOut:
        """Start the next iteration of a finished (incremental) run."""
        return await self._send(self._action(run_id, "continue"))

    async def fork(
        self,
        run_id: str,
        from_step: int | str,
        *,
        new_run_id: str | None = None,
        input: Any = None,
        version: str | None = None,
    ) -> RunOut:
        """A new run reusing ``run_id``'s checkpoints before ``from_step`` (a position as in
        :meth:`steps`, or a step name)."""
        return await self._send(self._fork(run_id, from_step, new_run_id, input, version))

    async def bulk_cancel(
        self,
        *,
        ids: list[str] | None = None,
        workflow: str | None = None,
        prefix: str | None = None,
        url_prefix: str | None = None,
        all: bool = False,
    ) -> Canceled:
        """Cancel a list of runs, every run of a workflow or id prefix, every HTTP-target
        run whose URL starts with ``url_prefix``, or ``all`` (given selectors combine)."""
        return await self._send(self._bulk_cancel(ids, workflow, prefix, url_prefix, all))

    # -- tasks -----------------------------------------------------------------------------

    async def create_task(
        self,
        workflow: str,
        input: Any = None,
        *,
        name: str | None = None,
        task_id: str | None = None,
        options: RunOptions | Mapping[str, Any] | None = None,
    ) -> TaskOut:
        """Save a run template; :meth:`execute_task` starts runs from it."""
        return await self._send(self._create_task(workflow, input, name, task_id, options))

    async def list_tasks(self, *, cursor: str | None = None, limit: int | None = None) -> TaskPage:
        return await self._send(self._list_tasks(cursor, limit))

    async def iter_tasks(self, *, limit: int | None = None) -> AsyncIterator[TaskOut]:
        cursor: str | None = None
        while True:
            page = await self.list_tasks(cursor=cursor, limit=limit)
            for task in page.items:
                yield task
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def get_task(self, task_id: str) -> TaskOut:
        return await self._send(self._get_task(task_id))

    async def update_task(
        self,
        task_id: str,
        *,
        name: str | None = UNSET,
        workflow: str = UNSET,
        input: Any = UNSET,
        options: RunOptions | Mapping[str, Any] = UNSET,
    ) -> TaskOut:
        """Change the fields given (``None`` clears the name or the input)."""
        return await self._send(self._update_task(task_id, name, workflow, input, options))

    async def delete_task(self, task_id: str) -> None:
        await self._send(self._delete_task(task_id))

    @overload
    async def execute_task(
        self,
        task_id: str,
        input: Any = None,
        *,
        mode: Literal["async"] = "async",
        **options: Unpack[ExecuteOptions],
    ) -> RunOut: ...

    @overload
    async def execute_task(
        self,
        task_id: str,
        input: Any = None,
        *,
        mode: Literal["live"],
        **options: Unpack[ExecuteOptions],
    ) -> LiveRunOut | RunStatusOut: ...

    async def execute_task(
        self,
        task_id: str,
        input: Any = None,
        *,
        mode: Literal["async", "live"] = "async",
        **options: Unpack[ExecuteOptions],
    ) -> RunStartResult:
        """Start a run from a task; ``input`` and ``options`` override its defaults."""
        return await self._send(self._execute_task(task_id, input, mode, options))

    # -- schedules -------------------------------------------------------------------------

    async def create_schedule(
        self,
        workflow: str | None = None,
        input: Any = None,
        *,
        cron: str | None = None,
        at: datetime | str | None = None,
        **options: Unpack[ScheduleOptions],
    ) -> ScheduleOut:
        """A schedule starting ``workflow`` with ``input`` (or the task ``task_id``) on
        ``cron`` (read in ``timezone``) or once ``at`` a time."""
        return await self._send(_schedules.create(workflow, input, cron, at, options))

    async def list_schedules(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> SchedulePage:
        return await self._send(_schedules.list_(cursor, limit))

    async def iter_schedules(self, *, limit: int | None = None) -> AsyncIterator[ScheduleOut]:
        cursor: str | None = None
        while True:
            page = await self.list_schedules(cursor=cursor, limit=limit)
            for schedule in page.items:
                yield schedule
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def get_schedule(self, schedule_id: str) -> ScheduleOut:
        """The schedule with its next 10 fire times, last 10 fires and counters."""
        return await self._send(_schedules.get(schedule_id))

    async def update_schedule(
        self, schedule_id: str, **changes: Unpack[ScheduleChanges]
    ) -> ScheduleOut:
        """Change the fields given, from the next fire on."""
        return await self._send(_schedules.update(schedule_id, changes))

    async def pause_schedule(self, schedule_id: str, note: str | None = None) -> ScheduleOut:
        return await self._send(_schedules.pause(schedule_id, note))

    async def resume_schedule(self, schedule_id: str) -> ScheduleOut:
        return await self._send(_schedules.resume(schedule_id))

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule (its runs stay)."""
        await self._send(_schedules.delete(schedule_id))

    async def trigger_schedule(
        self, schedule_id: str, *, overlap: Overlap | None = None
    ) -> FireOut:
        """One fire now (``overlap``: this fire's policy, default the schedule's)."""
        return await self._send(_schedules.trigger(schedule_id, overlap))

    async def backfill_schedule(
        self,
        schedule_id: str,
        start: datetime | str,
        end: datetime | str,
        *,
        overlap: Overlap | None = None,
    ) -> Backfilled:
        """Start the fires of ``[start, end)`` not started yet."""
        return await self._send(_schedules.backfill(schedule_id, start, end, overlap))

    # -- events and usage ------------------------------------------------------------------

    async def notify(self, event_id: str, data: Any = None) -> Notified:
        """Store event ``event_id`` and wake the runs waiting for it."""
        return await self._send(self._notify(event_id, data))

    async def waiters(self, event_id: str) -> list[WaiterOut]:
        """The runs waiting for ``event_id``."""
        return await self._send(self._waiters(event_id))

    async def usage(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        workflow: str | None = None,
        run_id: str | None = None,
    ) -> UsageOut:
        """Credits by action, workflow and day over ``[since, until)``; with ``run_id``,
        that run's only (since its start when ``since`` is not given)."""
        return await self._send(self._usage(since, until, workflow, run_id))
