"""The one JSON error shape of the API, ``{"error": {"code", "message", "details"}}``,
for every failure: Runyard's own errors, FastAPI's request validation, unknown routes
and methods, and anything unexpected (500 ``internal``, logged).

``ErrorBoundary`` sits outside the routing so that an exception nobody expected still
gets the shape (and a database that went away mid-request answers 503, not 500).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    CapacityExceeded,
    RunyardError,
    StorageFull,
    StoreUnavailable,
)
from ..schemas import ErrorResponse

log = logging.getLogger("runyard.server")

#: Seconds a client should wait before retrying while the database is away.
UNAVAILABLE_RETRY_AFTER_S = 1
#: Seconds a client should wait before retrying a write refused for a full disk.
FULL_RETRY_AFTER_S = 30


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

#: What each error status means, for the OpenAPI document.
DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one",
    403: "The API key's scope is too small",
    404: "Not found",
    409: "Illegal transition for the run's current status",
    413: "The request body is larger than the configured limit",
    415: "The body is not sent as JSON (`Content-Type: application/json`; a body without "
    "a `Content-Type` is read as JSON)",
    422: "The request is not valid; `details` names each bad field",
    429: "No capacity right now; retry after `Retry-After` seconds",
    503: "The database is unavailable; retry after `Retry-After` seconds. For a write, "
    "`details.outcome` is `not_applied` when nothing was done, else `unknown` (whether it "
    "took effect is unknown) and, for a start with a `run_id`, `details.check` is the "
    "run's URL",
    507: "The database's disk is full: nothing was written; retry after `Retry-After` seconds",
}


def error_responses(codes: Sequence[int]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    docs: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": DESCRIPTIONS[code]}
        if code in (429, 503, 507):
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            }
        docs[code] = entry
    return docs


def error_json(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
    )


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def unavailable_answer(exc: StoreUnavailable, method: str) -> tuple[str, Any]:
    """The message and details of a 503: plain words, never the driver's text (host,
    port, "Is the server running"), which is logged instead. A write may have reached
    the database before it went away: its outcome is unknown, and the answer says how to
    check (the run id, when the client gave one)."""
    wait = f"retry in {UNAVAILABLE_RETRY_AFTER_S} s"
    if method in _SAFE_METHODS:
        return f"the database is unavailable right now; {wait}", None
    given = exc.details if isinstance(exc.details, dict) else {}
    if given.get("outcome") == "not_applied":  # e.g. while the API key was checked
        return (
            f"the database is unavailable right now, so nothing was done; {wait}",
            {"outcome": "not_applied"},
        )
    details: dict[str, Any] = {"outcome": "unknown"}
    lost = "the database became unavailable while this request was handled"
    if given.get("run_id"):
        run_id = str(given["run_id"])
        details.update(run_id=run_id, check=f"/v1/runs/{run_id}")
        return (
            f"{lost}: whether run {run_id} was created is unknown. GET /v1/runs/{run_id} "
            "tells (404: it was not); sending the same request again is safe either way "
            f"(a start with an existing run_id answers that run); {wait}",
            details,
        )
    if "run_id" in given:  # a start without a run id
        return (
            f"{lost}: whether a run was created is unknown. Give a run_id to make a retry "
            "safe: a start with an existing run_id answers that run instead of starting "
            f"another; {wait}",
            details,
        )
    return (
        f"{lost}: whether it took effect is unknown; read what it changes to check before "
        f"sending it again; {wait}",
        details,
    )


@contextlib.contextmanager
def start_outcome(run_id: str | None) -> Iterator[None]:
    """Around a request that starts a run: a 503 from within names the run id given (or
    says to give one), so the client can learn whether the run was created."""
    try:
        yield
    except StoreUnavailable as exc:
        raise StoreUnavailable(exc.message, details={"run_id": run_id}) from exc


def runyard_error_response(exc: RunyardError, method: str = "GET") -> JSONResponse:
    """The answer to ``exc``, raised while handling a request of ``method``."""
    headers: dict[str, str] = {}
    message, details = exc.message, _jsonable(exc.details)
    if isinstance(exc, CapacityExceeded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, StoreUnavailable):
        headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
        log.warning("database unavailable during a %s: %s", method, exc.message)
        message, details = unavailable_answer(exc, method)
    elif isinstance(exc, StorageFull):
        headers["Retry-After"] = str(FULL_RETRY_AFTER_S)
        log.error("a %s was refused: %s", method, exc.message)
    elif exc.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    status = exc.http_status if 400 <= exc.http_status <= 599 else 500
    return error_json(status, exc.code, message, details, headers)


def _jsonable(value: Any) -> Any:
    """Details come from our own code, but never let one break the error response."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def field_name(loc: Sequence[Any]) -> tuple[str, str]:
    """``("body", "inputs", 0, "input")`` → ``("body", "inputs[0].input")``."""
    where = str(loc[0]) if loc else "body"
    name = ""
    for part in loc[1:]:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + str(part)
    return where, name or where


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    details = []
    for err in errors:
        where, name = field_name(err.get("loc", ()))
        # The offending value ("input") and the exception objects in "ctx" are left out:
        # they can be large, secret or not JSON.
        details.append(
            {"field": name, "in": where, "error": err.get("msg", ""), "type": err.get("type", "")}
        )
    return details


async def _runyard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RunyardError)
    return runyard_error_response(exc, request.method)


def validation_summary(details: Sequence[dict[str, Any]]) -> str:
    """The message of a 422: each bad field and what is wrong with it (the first ten)."""
    summary = "; ".join(f"{d['field']}: {d['error']}" for d in details[:10])
    more = f" (and {len(details) - 10} more)" if len(details) > 10 else ""
    return f"invalid request: {summary}{more}"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    return error_json(422, "invalid_input", validation_summary(details), details)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this path (Starlette's 405 names
    only the first route's: ``DELETE /v1/runs`` said ``Allow: POST``, not GET too)."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "route_table", ()):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and message == "Not Found":
        message = "no such route"
    if exc.status_code == 405:
        given = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        # Routing's own 405 (its default detail) names one route's methods: all of them
        # here. A route that refuses a method itself names what it allows.
        allowed = (allowed_methods(request) if message == "Method Not Allowed" else []) or given
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
    return error_json(exc.status_code, code, message, headers=headers)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RunyardError, _runyard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class ErrorBoundary:
    """Turns an exception that escaped every handler into the JSON shape: 503 when it is
    a transient database error (``is_transient``), else 500 ``internal``, logged."""

    def __init__(self, app: ASGIApp, is_transient: Callable[[BaseException], bool]) -> None:
        self.app = app
        self.is_transient = is_transient

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            response = unexpected_error_response(exc, scope, self.is_transient)
            if started:
                # Part of the answer is out (a stream): all we can do is end it.
                return
            await response(scope, receive, send)


def unexpected_error_response(
    exc: Exception, scope: Scope, is_transient: Callable[[BaseException], bool]
) -> JSONResponse:
    """The answer to an exception no handler expected: 503 when it is a transient
    database error, else 500 ``internal`` (logged with its traceback)."""
    if is_transient(exc):
        log.warning("database unavailable during %s %s: %s", scope["method"], scope["path"], exc)
        return runyard_error_response(StoreUnavailable(), scope["method"])
    log.error("unexpected error in %s %s", scope["method"], scope["path"], exc_info=exc)
    return error_json(500, "internal", "internal server error")
