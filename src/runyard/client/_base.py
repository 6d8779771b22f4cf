"""What :class:`~runyard.client.Client` and :class:`~runyard.client.AsyncClient` share:
building each request, deciding on retries, parsing responses into the wire models of
:mod:`runyard.schemas` and turning error bodies back into :mod:`runyard.errors` classes.

The two clients only add I/O: each public method builds a :class:`Call` here and sends
it through ``httpx.Client`` or ``httpx.AsyncClient``.
"""

from __future__ import annotations

import email.utils
import enum
import os
import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from .. import __version__, errors
from ..errors import RunyardError, ServerUnreachable
from ..models import RunStatus
from ..schemas import (
    Canceled,
    DeliveryList,
    DeliveryOut,
    ErrorResponse,
    Health,
    InputIn,
    InputOut,
    LiveRunOut,
    LogPage,
    Notified,
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
from ._types import UNSET, ExecuteOptions, RunFilters, StartOptions

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", OutputPage, LogPage)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 3
#: Longest wait of one ``/result`` long-poll; :meth:`wait_for_completion` chains them.
LONG_POLL_S = 60.0
#: Statuses retried for any method: the server refused the request before doing anything.
RETRY_ALWAYS = frozenset({429, 503})
#: Statuses retried only when repeating the request is harmless.
RETRY_IDEMPOTENT = frozenset({502, 504})
SUCCESS = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL_SUCCEEDED})


RunMode = Literal["async", "live"]
RunStartResult = RunOut | LiveRunOut | RunStatusOut
#: What the server waits for a live run by default before answering 202.
LIVE_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request, ready to send, and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = UNSET
    #: Extra seconds to wait for the answer (a server-side long-poll).
    extra_timeout_s: float = 0.0
    #: Sending it twice does no harm, so it may be retried after a broken connection.
    idempotent: bool = False
    #: Retried when the server answers 429/503 (not for a health check: 503 is its answer).
    retry_busy: bool = True

    @property
    def json(self) -> Any:
        return None if self.body is UNSET else self.body


# -- errors --------------------------------------------------------------------------------


def _error_classes() -> dict[str, list[type[RunyardError]]]:
    """Every :class:`RunyardError` of :mod:`runyard.errors` (and this module) by code."""
    found: dict[str, list[type[RunyardError]]] = {}
    todo: list[type[RunyardError]] = [RunyardError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__ in (errors.__name__, __name__):
            found.setdefault(cls.code, []).append(cls)
    return found


def _depth(cls: type) -> int:
    return len(cls.__mro__)


def error_class(code: str | None, status: int) -> type[RunyardError]:
    """The class for an error ``code`` (the one whose ``http_status`` matches the answer
    when several share a code), else the most general class for the HTTP status."""
    classes = _error_classes()
    candidates = classes.get(code or "", [])
    if candidates:
        matching = [c for c in candidates if c.http_status == status] or candidates
        # a class of runyard.errors wins over this module's stand-ins for the same code
        return min(matching, key=lambda c: (c.__module__ != errors.__name__, _depth(c)))
    # (Not the errors of a run's own outbound calls: a proxy's 502 is not a callback's.)
    by_status = [
        c
        for group in classes.values()
        for c in group
        if c.http_status == status and not issubclass(c, errors.OutboundError)
    ]
    if by_status:
        return min(by_status, key=lambda c: (_depth(c), c.__name__ != "IllegalTransition"))
    return RunyardError


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date)."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> RunyardError:
    """The exception for an error answer: the class named by the body's ``code``."""
    code: str | None = None
    details: Any = None
    message = ""
    try:
        body = ErrorResponse.model_validate_json(response.content)
    except ValueError:
        text = response.text.strip().splitlines()
        message = f"HTTP {response.status_code}" + (f": {text[0][:200]}" if text else "")
    else:
        code, message, details = body.error.code, body.error.message, body.error.details
    cls = error_class(code, response.status_code)
    try:
        exc = cls(message, details=details)
    except TypeError:  # a class whose constructor takes no details (RateLimited)
        exc = cls(message)
        exc.details = details
    if isinstance(exc, errors.CapacityExceeded | errors.RateLimited):
        after = retry_after_s(response)
        if after is not None:
            exc.retry_after = after
    return exc


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise error_from_response(response)


def unreachable(base_url: str, exc: httpx.TransportError) -> ServerUnreachable:
    reason = str(exc) or type(exc).__name__
    return ServerUnreachable(
        f"cannot reach the Runyard server at {base_url}: {reason}",
        details={"url": base_url, "error": type(exc).__name__},
    )


# -- parsing -------------------------------------------------------------------------------


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        raise_for_error(response)
        return model.model_validate_json(response.content)

    return parse


def _items(item: type[M]) -> Callable[[httpx.Response], list[M]]:
    def parse(response: httpx.Response) -> list[M]:
        raise_for_error(response)
        return [item.model_validate(x) for x in response.json()["items"]]

    return parse


def _parse_start(response: httpx.Response) -> RunStartResult:
    """``POST /v1/runs``: 201/200 a run, 200 a live answer, 202 a live run still going."""
    raise_for_error(response)
    body = response.json()
    if response.status_code == 202:
        return RunStatusOut.model_validate(body)
    if isinstance(body, dict) and "run" in body and "outputs" in body:
        live = LiveRunOut.model_validate(body)
        if live.next_cursor is None and response.headers.get("x-pagination-next"):
            live.next_cursor = response.headers["x-pagination-next"]
        return live
    return RunOut.model_validate(body)


def _parse_result(response: httpx.Response) -> RunOut | RunStatusOut:
    raise_for_error(response)
    if response.status_code == 202:
        return RunStatusOut.model_validate_json(response.content)
    return RunOut.model_validate_json(response.content)


@dataclass(frozen=True, slots=True)
class Busy:
    """A long-poll of ``/result`` the server refused for now (429 or 503)."""

    error: RunyardError
    retry_after_s: float | None


def _parse_poll(response: httpx.Response) -> RunOut | RunStatusOut | Busy:
    """``/result`` as :meth:`wait_for_completion` reads it: a refusal for now is an
    answer too (the wait decides when to ask again, not the request's retry budget)."""
    if response.status_code in RETRY_ALWAYS:
        return Busy(error_from_response(response), retry_after_s(response))
    return _parse_result(response)


def _paged(model: type[P]) -> Callable[[httpx.Response], P]:
    """A page of outputs or log lines, its ``next_cursor`` from ``X-Pagination-Next``."""

    def parse(response: httpx.Response) -> P:
        raise_for_error(response)
        page = model.model_validate_json(response.content)
        header = response.headers.get("x-pagination-next")
        if header:
            page.next_cursor = header
        return page

    return parse


def _parse_none(response: httpx.Response) -> None:
    raise_for_error(response)


def _parse_text(response: httpx.Response) -> str:
    raise_for_error(response)
    return response.text


def _parse_health(response: httpx.Response) -> Health:
    # 503 with a Health body means "up, but the database is not reachable"
    if response.status_code == 503:
        try:
            return Health.model_validate_json(response.content)
        except ValueError:
            pass
    raise_for_error(response)
    return Health.model_validate_json(response.content)


# -- request bodies ------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Models, datetimes and enums as JSON values; everything else as given."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _iso(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is local time
    return value.astimezone(UTC).isoformat()


def _body(**fields: Any) -> dict[str, Any]:
    """The fields that were given (``UNSET`` and, unless noted, ``None`` left out)."""
    return {k: _jsonable(v) for k, v in fields.items() if v is not UNSET and v is not None}


def _inputs(inputs: Iterable[Any] | None) -> list[Any] | None:
    """Each input as ``{"input": ..., "custom_data": ...}``: an :class:`InputIn` or a dict
    with exactly those keys is taken as is; any other value is the input itself."""
    if inputs is None:
        return None
    out: list[Any] = []
    for entry in inputs:
        if isinstance(entry, InputIn):
            out.append(entry.model_dump(mode="json", exclude_unset=True))
        elif (
            isinstance(entry, Mapping)
            and "input" in entry
            and set(entry)
            <= {
                "input",
                "custom_data",
            }
        ):
            out.append(_jsonable(entry))
        else:
            out.append({"input": _jsonable(entry)})
    return out


def client_run_id() -> str:
    """A run id chosen by the client, so that starting a run can be retried safely (the
    server answers a repeat with the run the first attempt created)."""
    return f"run_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def _statuses(status: str | Sequence[str] | None) -> list[str]:
    if status is None:
        return []
    if isinstance(status, str):
        return [status]
    return [str(s) for s in status]


def _params(**values: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        for v in items:
            if v is None:
                continue
            if isinstance(v, bool):
                out.append((name, "true" if v else "false"))
            elif isinstance(v, datetime):
                out.append((name, _iso(v)))
            elif isinstance(v, enum.Enum):
                out.append((name, str(v.value)))
            else:
                out.append((name, str(v)))
    return out


def _seg(value: str) -> str:
    """One path segment (run and event ids may hold ``:``, ``@``, ``+`` and more)."""
    if not isinstance(value, str) or not value:
        raise errors.InvalidInput("an id must be a non-empty string")
    return quote(value, safe="")


# -- the shared client ---------------------------------------------------------------------


class BaseClient:
    """Configuration, request building and retry decisions of both clients."""

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
    ) -> None:
        """``base_url`` defaults to ``RUNYARD_URL`` (else ``http://127.0.0.1:8000``),
        ``api_key`` to ``RUNYARD_API_KEY``. ``timeout`` bounds each request (a long-poll
        adds its own wait to it); ``max_retries`` is how many times a request refused
        with 429/503 or hit by a connection error is tried again, after an exponential
        backoff with jitter starting at ``backoff_s`` (or the ``Retry-After`` given)."""
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = (base_url or os.environ.get("RUNYARD_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("RUNYARD_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.headers: dict[str, str] = {
            "user-agent": f"runyard-python/{__version__}",
            "accept": "application/json",
            **(headers or {}),
        }
        if self.api_key:
            self.headers["authorization"] = f"Bearer {self.api_key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    # -- retries ---------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (between half and all of the step)."""
        step = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return step * (0.5 + random.random() / 2)

    def _retry_response(
        self, call: Call[Any], response: httpx.Response, attempt: int
    ) -> float | None:
        """Seconds to wait before trying ``call`` again, or ``None`` to take this answer."""
        if attempt >= self.max_retries or not call.retry_busy:
            return None
        status = response.status_code
        if status not in RETRY_ALWAYS and not (call.idempotent and status in RETRY_IDEMPOTENT):
            return None
        after = retry_after_s(response)
        if after is not None:
            return min(after, self.max_backoff_s)
        return self._backoff(attempt)

    def _retry_error(
        self, call: Call[Any], exc: httpx.TransportError, attempt: int
    ) -> float | None:
        """Seconds to wait before trying again after a transport error, or ``None``."""
        if attempt >= self.max_retries:
            return None
        # a refused connection never reached the server: any request may be repeated
        if not (call.idempotent or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)):
            return None
        return self._backoff(attempt)

    def _reconnect_s(self, attempt: int) -> float | None:
        """Seconds before reopening an event stream that closed before ``end``."""
        return None if attempt >= self.max_retries else self._backoff(attempt)

    def _url(self, call: Call[Any]) -> str:
        return self.base_url + call.path

    def _timeout(self, call: Call[Any]) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=self.timeout + call.extra_timeout_s)

    def _unreachable(self, exc: httpx.TransportError) -> ServerUnreachable:
        return unreachable(self.base_url, exc)

    # -- health and workflows --------------------------------------------------------------

    def _health(self) -> Call[Health]:
        return Call("GET", "/healthz", _parse_health, idempotent=True, retry_busy=False)

    def _metrics(self) -> Call[str]:
        return Call("GET", "/metrics", _parse_text, idempotent=True)

    def _list_workflows(self) -> Call[list[WorkflowOut]]:
        return Call("GET", "/v1/workflows", _items(WorkflowOut), idempotent=True)

    def _get_workflow(self, name: str) -> Call[WorkflowOut]:
        return Call("GET", f"/v1/workflows/{_seg(name)}", _model(WorkflowOut), idempotent=True)

    # -- runs ------------------------------------------------------------------------------

    def _start_run(
        self, workflow: str | None, input: Any, mode: RunMode, options: StartOptions
    ) -> Call[RunStartResult]:
        body = _body(
            workflow=workflow,
            input=input,
            mode=mode,
            **{**options, "inputs": _inputs(options.get("inputs"))},
        )
        # a run id chosen here makes a repeat harmless: the server answers a second
        # POST with the run the first one created
        body.setdefault("run_id", client_run_id())
        return Call(
            "POST",
            "/v1/runs",
            _parse_start,
            body=body,
            extra_timeout_s=self._live_wait(mode, options.get("wait_timeout")),
            idempotent=True,
        )

    @staticmethod
    def _live_wait(mode: RunMode, wait_timeout: float | None) -> float:
        return (wait_timeout or LIVE_WAIT_S) if mode == "live" else 0.0

    def _get_run(self, run_id: str) -> Call[RunOut]:
        return Call("GET", f"/v1/runs/{_seg(run_id)}", _model(RunOut), idempotent=True)

    def _get_status(self, run_id: str) -> Call[RunStatusOut]:
        return Call("GET", f"/v1/runs/{_seg(run_id)}/status", _model(RunStatusOut), idempotent=True)

    def _get_result(self, run_id: str, timeout: float | None) -> Call[RunOut | RunStatusOut]:
        return Call(
            "GET",
            f"/v1/runs/{_seg(run_id)}/result",
            _parse_result,
            params=_params(timeout=timeout),
            extra_timeout_s=timeout or 0.0,
            idempotent=True,
        )

    def _list_runs(self, cursor: str | None, filters: RunFilters) -> Call[RunPage]:
        values: dict[str, Any] = dict(filters)
        values["status"] = _statuses(filters.get("status"))
        params = _params(**values, cursor=cursor)
        return Call("GET", "/v1/runs", _model(RunPage), params=params, idempotent=True)

    def _inputs(self, run_id: str) -> Call[list[InputOut]]:
        return Call("GET", f"/v1/runs/{_seg(run_id)}/inputs", _items(InputOut), idempotent=True)

    def _outputs(self, run_id: str, cursor: str | None, limit: int | None) -> Call[OutputPage]:
        return Call(
            "GET",
            f"/v1/runs/{_seg(run_id)}/outputs",
            _paged(OutputPage),
            params=_params(cursor=cursor, limit=limit),
            idempotent=True,
        )

    def _logs(self, run_id: str, after: int | str | None, limit: int | None) -> Call[LogPage]:
        return Call(
            "GET",
            f"/v1/runs/{_seg(run_id)}/logs",
            _paged(LogPage),
            params=_params(after=after, limit=limit),
            idempotent=True,
        )

    def _queue(
        self,
        run_id: str,
        offset: int | None,
        limit: int | None,
        state: str | None,
        include_history: bool | None,
    ) -> Call[QueuePage]:
        return Call(
            "GET",
            f"/v1/runs/{_seg(run_id)}/queue",
            _model(QueuePage),
            params=_params(
                offset=offset, limit=limit, state=state, include_history=include_history
            ),
            idempotent=True,
        )

    def _steps(self, run_id: str) -> Call[list[StepOut]]:
        return Call("GET", f"/v1/runs/{_seg(run_id)}/steps", _items(StepOut), idempotent=True)

    def _transitions(self, run_id: str) -> Call[list[TransitionOut]]:
        path = f"/v1/runs/{_seg(run_id)}/transitions"
        return Call("GET", path, _items(TransitionOut), idempotent=True)

    def _events(self, run_id: str) -> Call[None]:
        """The event stream (sent by each client's ``stream_events``, not ``_send``)."""
        return Call("GET", f"/v1/runs/{_seg(run_id)}/events", _parse_none, idempotent=True)

    def _events_headers(self, last_event_id: str | None) -> dict[str, str]:
        headers = {
            **self.headers,
            "accept": "text/event-stream",
            "cache-control": "no-cache",
        }
        if last_event_id is not None:
            headers["last-event-id"] = last_event_id
        return headers

    def _action(self, run_id: str, action: str) -> Call[RunOut]:
        return Call("POST", f"/v1/runs/{_seg(run_id)}/{action}", _model(RunOut), body={})

    def _deliveries(self, run_id: str) -> Call[DeliveryList]:
        path = f"/v1/runs/{_seg(run_id)}/deliveries"
        return Call("GET", path, _model(DeliveryList), idempotent=True)

    def _redeliver(self, run_id: str, delivery_id: int) -> Call[DeliveryOut]:
        path = f"/v1/runs/{_seg(run_id)}/deliveries/{int(delivery_id)}/redeliver"
        return Call("POST", path, _model(DeliveryOut), body={}, idempotent=True)

    def _fork(
        self,
        run_id: str,
        from_step: int | str,
        new_run_id: str | None,
        input: Any,
        version: str | None,
    ) -> Call[RunOut]:
        body = _body(
            from_step=from_step, run_id=new_run_id or client_run_id(), input=input, version=version
        )
        return Call(
            "POST", f"/v1/runs/{_seg(run_id)}/fork", _model(RunOut), body=body, idempotent=True
        )

    def _bulk_cancel(
        self,
        ids: Sequence[str] | None,
        workflow: str | None,
        prefix: str | None,
        url_prefix: str | None,
        all: bool,
    ) -> Call[Canceled]:
        body = _body(
            ids=list(ids) if ids is not None else None,
            workflow=workflow,
            prefix=prefix,
            url_prefix=url_prefix,
            all=all or None,
        )
        return Call("POST", "/v1/runs/cancel", _model(Canceled), body=body, idempotent=True)

    # -- tasks -----------------------------------------------------------------------------

    def _create_task(
        self,
        workflow: str,
        input: Any,
        name: str | None,
        task_id: str | None,
        options: RunOptions | Mapping[str, Any] | None,
    ) -> Call[TaskOut]:
        body = _body(id=task_id, name=name, workflow=workflow, input=input, options=options)
        return Call("POST", "/v1/tasks", _model(TaskOut), body=body, idempotent=task_id is not None)

    def _list_tasks(self, cursor: str | None, limit: int | None) -> Call[TaskPage]:
        return Call(
            "GET",
            "/v1/tasks",
            _model(TaskPage),
            params=_params(cursor=cursor, limit=limit),
            idempotent=True,
        )

    def _get_task(self, task_id: str) -> Call[TaskOut]:
        return Call("GET", f"/v1/tasks/{_seg(task_id)}", _model(TaskOut), idempotent=True)

    def _update_task(
        self, task_id: str, name: Any, workflow: Any, input: Any, options: Any
    ) -> Call[TaskOut]:
        # here None is a value (clear the name or the input): only UNSET leaves a field out
        body = {
            k: _jsonable(v)
            for k, v in {
                "name": name,
                "workflow": workflow,
                "input": input,
                "options": options,
            }.items()
            if v is not UNSET
        }
        return Call(
            "PATCH", f"/v1/tasks/{_seg(task_id)}", _model(TaskOut), body=body, idempotent=True
        )

    def _delete_task(self, task_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/tasks/{_seg(task_id)}", _parse_none, idempotent=True)

    def _execute_task(
        self, task_id: str, input: Any, mode: RunMode, options: ExecuteOptions
    ) -> Call[RunStartResult]:
        body = _body(
            input=input, mode=mode, **{**options, "inputs": _inputs(options.get("inputs"))}
        )
        body.setdefault("run_id", client_run_id())
        return Call(
            "POST",
            f"/v1/tasks/{_seg(task_id)}/execute",
            _parse_start,
            body=body,
            extra_timeout_s=self._live_wait(mode, options.get("wait_timeout")),
            idempotent=True,
        )

    # -- events and usage ------------------------------------------------------------------

    def _notify(self, event_id: str, data: Any) -> Call[Notified]:
        return Call(
            "POST",
            f"/v1/events/{_seg(event_id)}",
            _model(Notified),
            body={"data": _jsonable(data)},
        )

    def _waiters(self, event_id: str) -> Call[list[WaiterOut]]:
        return Call(
            "GET",
            f"/v1/events/{_seg(event_id)}/waiters",
            _items(WaiterOut),
            idempotent=True,
        )

    def _usage(
        self,
        since: datetime | str | None,
        until: datetime | str | None,
        workflow: str | None,
        run_id: str | None = None,
    ) -> Call[UsageOut]:
        return Call(
            "GET",
            "/v1/usage",
            _model(UsageOut),
            params=_params(since=since, until=until, workflow=workflow, run_id=run_id),
            idempotent=True,
        )

    # -- waiting ---------------------------------------------------------------------------

    @staticmethod
    def _poll_s(deadline: float | None) -> float:
        """How long the next ``/result`` long-poll may last before ``deadline``."""
        if deadline is None:
            return LONG_POLL_S
        return max(0.0, min(LONG_POLL_S, deadline - time.monotonic()))

    def _poll_result(
        self, run_id: str, deadline: float | None
    ) -> Call[RunOut | RunStatusOut | Busy]:
        """One long-poll of :meth:`wait_for_completion`, lasting until ``deadline`` at
        most; a 429 or 503 comes back as :class:`Busy`."""
        timeout = self._poll_s(deadline)
        return Call(
            "GET",
            f"/v1/runs/{_seg(run_id)}/result",
            _parse_poll,
            params=_params(timeout=timeout),
            extra_timeout_s=timeout,
            idempotent=True,
            retry_busy=False,
        )

    def _pause_s(
        self,
        run_id: str,
        answer: RunStatusOut | Busy,
        refusals: int,
        deadline: float | None,
        timeout: float | None,
    ) -> float:
        """Seconds to pause before the next long-poll of a run not finished yet: none
        after the server's answer; after a refusal (the ``refusals``-th in a row, from 0),
        its ``Retry-After`` or a backoff, never past ``deadline``. :class:`Timeout` once
        ``deadline`` has passed."""
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise self._timed_out(run_id, answer, timeout)
        if isinstance(answer, RunStatusOut):
            return 0.0
        after = answer.retry_after_s
        pause = min(self.max_backoff_s, after if after is not None else self._backoff(refusals))
        return pause if deadline is None else min(pause, deadline - now)

    @staticmethod
    def _timed_out(
        run_id: str, answer: RunStatusOut | Busy, timeout: float | None
    ) -> errors.Timeout:
        if isinstance(answer, Busy):
            exc = errors.Timeout(
                f"run {run_id} did not finish within {timeout} s (the server last refused "
                f"the wait: {answer.error.message})",
                details={"run_id": run_id, "status": None, "refused": answer.error.code},
            )
            exc.__cause__ = answer.error
            return exc
        return errors.Timeout(
            f"run {run_id} is still {answer.status.value} after {timeout} s",
            details={"run_id": run_id, "status": answer.status.value},
        )

    @staticmethod
    def _result_of(run: RunOut) -> Any:
        if run.status.value in SUCCESS:
            return run.result
        message = run.error.get("message") if isinstance(run.error, dict) else None
        raise errors.RunFailed(
            f"run {run.id} ended {run.status.value}" + (f": {message}" if message else ""),
            status=run.status.value,
            details=run.error,
        )
