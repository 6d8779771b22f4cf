"""The one JSON error shape of the API, ``{"error": {"code", "message", "details"}}``,
for every failure: Runyard's own errors, FastAPI's request validation, unknown routes
and methods, and anything unexpected (500 ``internal``, logged).

``ErrorBoundary`` sits outside the routing so that an exception nobody expected still
gets the shape (and a database that went away mid-request answers 503, not 500).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    CapacityExceeded,
    RunyardError,
    StoreUnavailable,
)
from ..schemas import ErrorResponse

log = logging.getLogger("runyard.server")

#: Seconds a client should wait before retrying while the database is away.
UNAVAILABLE_RETRY_AFTER_S = 1


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
    422: "The request is not valid; `details` names each bad field",
    429: "No capacity right now; retry after `Retry-After` seconds",
    503: "The database is unavailable; retry after `Retry-After` seconds",
}


def error_responses(codes: Sequence[int]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    docs: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": DESCRIPTIONS[code]}
        if code in (429, 503):
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


def runyard_error_response(exc: RunyardError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, CapacityExceeded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, StoreUnavailable):
        headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
    elif exc.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    status = exc.http_status if 400 <= exc.http_status <= 599 else 500
    return error_json(status, exc.code, exc.message, _jsonable(exc.details), headers)


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


async def _runyard_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RunyardError)
    return runyard_error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    summary = "; ".join(f"{d['field']}: {d['error']}" for d in details[:10])
    return error_json(422, "invalid_input", f"invalid request: {summary}", details)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "no such route"
    return error_json(exc.status_code, code, message, headers=dict(exc.headers or {}))


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
        return runyard_error_response(StoreUnavailable(f"the database is unavailable: {exc}"))
    log.error("unexpected error in %s %s", scope["method"], scope["path"], exc_info=exc)
    return error_json(500, "internal", "internal server error")
