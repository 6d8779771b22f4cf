"""The direct path of ``POST /v1/runs``, the call a busy deployment makes most.

FastAPI's own path for one request (eight middleware layers, routing, dependency
solving, the body parsed twice) cost 0.2 ms of CPU of the 0.35 ms a trigger took in all
(measured in process, SQLite, 32 requests in flight): more than starting the run. So
:class:`RunyardAPI` answers a plain trigger itself, with the same functions the route
uses: the key check (:func:`~runyard.server.auth.authenticate`), the strict body check,
the ``RunCreate`` model and :func:`~runyard.server.routes.runs.start_run`; its errors get
the same answers the route's handlers give, and the request is counted in the same
metrics.

Whatever this path would refuse before the run is written (no or bad key, too small a
scope, a body that is not strict JSON or does not fit ``RunCreate``) goes to FastAPI's
route instead, with the body it read, and is answered there: every refusal keeps exactly
the route's answer. So does every request that is not a plain trigger: a query string, a
body without ``Content-Length`` or over the limit, a content type other than JSON, or
OpenTelemetry configured (``ServerSettings.telemetry``: FastAPI's native telemetry then
traces every request).
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..errors import RunyardError
from ..schemas import RunCreate
from ..service import retry_window
from .auth import authenticate, strict_json
from .errors import runyard_error_response, unexpected_error_response
from .routes.runs import start_run
from .state import ServerState

PATH = "/v1/runs"


class RunyardAPI(FastAPI):
    """FastAPI, with the direct path for ``POST /v1/runs`` in front (see the module)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = self.state.runyard
            assert isinstance(state, ServerState)
            # The request's database work fails within the server's window (503), also
            # where the process's executor has a longer one (a worker's, `runyard dev`).
            # (Each request runs in a task of its own: this setting ends with it.)
            retry_window.set(state.settings.db_retry_s)
            if (
                scope["path"] == PATH
                and scope["method"] == "POST"
                and not self.root_path
                and not state.settings.telemetry
            ):
                rest = await trigger(state, scope, receive, send)
                if rest is None:
                    return
                receive = rest
        await super().__call__(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back ``messages`` (the body already read)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def trigger(state: ServerState, scope: Scope, receive: Receive, send: Send) -> Receive | None:
    """Answer a plain ``POST /v1/runs``; None when answered, else the ``receive`` that
    FastAPI's route must read the request from."""
    started = time.perf_counter()
    length: bytes | None = None
    json_body = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"content-type":
            json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
    if (
        scope["query_string"]
        or not json_body
        or length is None
        or not length.isdigit()
        or int(length) > state.settings.max_body_bytes
    ):
        return receive
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return _replay(messages, receive)  # the client left: the route sees it too
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    request = Request(scope, receive)
    try:
        principal = await authenticate(state, request)
        principal.require("write")
        value = strict_json(b"".join(chunks))
        body = RunCreate.model_validate(value)
        if RunCreate.cross_field_problems(value):
            return _replay(messages, receive)  # the route's 422 names them all
    except ValidationError:
        return _replay(messages, receive)
    except RunyardError as exc:
        if exc.http_status < 500:
            return _replay(messages, receive)
        response = runyard_error_response(exc, "POST")
        await _answer(state, scope, receive, send, response, started)
        return None
    except Exception as exc:
        response = unexpected_error_response(exc, scope, state.service.is_transient)
        await _answer(state, scope, receive, send, response, started)
        return None
    # From here on the run may be written: answered here whatever happens.
    try:
        response = await start_run(state, request, body)
    except RunyardError as exc:
        response = runyard_error_response(exc, "POST")
    except Exception as exc:
        response = unexpected_error_response(exc, scope, state.service.is_transient)
    await _answer(state, scope, receive, send, response, started)
    return None


async def _answer(
    state: ServerState,
    scope: Scope,
    receive: Receive,
    send: Send,
    response: Response,
    started: float,
) -> None:
    try:
        await response(scope, receive, send)
    finally:
        state.metrics.observe_request(
            "POST", PATH, response.status_code, time.perf_counter() - started
        )
