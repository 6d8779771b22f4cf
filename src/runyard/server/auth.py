"""API keys on every ``/v1`` route and ``/metrics``.

A key comes in ``x-api-key: <key>`` or ``Authorization: Bearer <key>``. It is looked up
by digest on every request (no cache), so a revocation takes effect at once. Scopes:
GET needs ``read``, anything else ``write``; a handler may ask for more (bulk cancel of
every run needs ``admin``). ``RUNYARD_API_KEY`` is the server's own admin key, unless it
is a key issued with ``runyard keys create``: then its stored scopes and revocation apply.

:class:`ApiRoute` checks the key *before* FastAPI reads and validates the body, so a
caller without a valid key learns nothing about the body's shape (401, never 422). It
also refuses text the database cannot store (NUL characters, lone surrogates) and JSON
that is not strict (``NaN``, ``Infinity``) with 422, before any handler runs.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from .. import keys
from ..errors import Forbidden, InvalidInput, Unauthorized
from ..schemas import Scope
from .errors import error_responses
from .state import ServerState, server_state

TOUCH_EVERY_S = 60.0
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: The two ways to send a key, as OpenAPI security schemes; every ApiRoute documents
#: them (the check itself runs in ApiRoute, before the body is read: a dependency doing
#: nothing but documenting cost each request the solving of three).
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "APIKeyHeader": {
        "type": "apiKey",
        "description": "An API key (`ry_...`)",
        "in": "header",
        "name": "x-api-key",
    },
    "HTTPBearer": {
        "type": "http",
        "description": "The API key as a bearer token",
        "scheme": "bearer",
    },
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's public id and its scopes."""

    key_id: str
    scopes: tuple[str, ...]

    def require(self, scope: Scope) -> None:
        if not keys.allows(self.scopes, scope):
            raise Forbidden(
                f"this API key's scopes ({', '.join(self.scopes) or 'none'}) do not include "
                f"{scope!r}",
                details={"needed": scope, "granted": list(self.scopes)},
            )


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(state: ServerState, request: Request) -> Principal:
    key = presented_key(request)
    if key is None:
        raise Unauthorized()
    if await _is_server_key(state, key):
        return Principal("env:RUNYARD_API_KEY", ("admin",))
    # A malformed key cannot be valid: refused without asking the database.
    if not keys.well_formed(key):
        raise Unauthorized("unknown or revoked API key")
    found = await state.service.api_key(keys.digest(key))
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    principal = Principal(found.id, found.scopes)
    _touch(state, principal.key_id)
    return principal


async def _is_server_key(state: ServerState, key: str) -> bool:
    """``key`` is the server's own admin key (``RUNYARD_API_KEY``): the value given, unless
    it is a key issued with ``runyard keys create``, whose stored scopes and revocation
    apply like any other key's."""
    server_key = state.settings.api_key
    if not server_key or not hmac.compare_digest(key.encode(), server_key.encode()):
        return False
    if state.server_key_issued is None:
        state.server_key_issued = keys.well_formed(key) and await state.service.api_key_issued(
            keys.digest(key)
        )
    return not state.server_key_issued


def _touch(state: ServerState, key_id: str) -> None:
    """Record the key's last use, at most once a minute and off the request's path."""
    now = time.monotonic()
    if now - state.touched.get(key_id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
        return
    state.touched[key_id] = now
    state.spawn(state.service.touch_api_key(key_id), "recording a key's use")


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    assert isinstance(principal, Principal), "route is not an ApiRoute"
    return principal


# -- text the database cannot hold ------------------------------------------------------


def _unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """The path of the first value the database cannot store, and what is wrong with it:
    a string (or key) with a NUL or a lone surrogate, or a number that is not finite
    (``NaN``, ``Infinity``, or ``1e999``, which parses as infinity)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, "not a finite number")
    if isinstance(value, str):
        if "\x00" in value:
            return path, "a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "an invalid Unicode sequence"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _unstorable(k, f"{path}.<key>") or _unstorable(v, f"{path}.{k}" if path else k)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _unstorable(v, f"{path}[{i}]")
            if found:
                return found
    return None


def check_query_and_path(request: Request) -> None:
    if "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b""):
        raise InvalidInput(
            "the path or the query contains a NUL character",
            details=[{"field": "query", "in": "query", "error": "NUL character"}],
        )


#: One decoder (``json.loads`` with options builds one a call). It reads ``NaN`` and
#: ``Infinity`` as numbers, which :func:`_unstorable` then refuses, naming their field.
_STRICT = json.JSONDecoder()
#: What :func:`strict_json` gives for a body that is not JSON at all.
NOT_JSON: Any = object()


def strict_json(body: bytes) -> Any:
    """The JSON value of ``body`` if it is strict JSON with storable text; 422 if it is
    not; :data:`NOT_JSON` for a body that is not JSON at all (left to FastAPI, which
    names the position of the error)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            "the body is not UTF-8",
            details=[{"field": "body", "in": "body", "error": "not UTF-8"}],
        ) from None
    try:
        value = _STRICT.decode(text)
    except ValueError:
        return NOT_JSON
    found = _unstorable(value, "")
    if found is not None:
        field = found[0] or "body"
        raise InvalidInput(
            f"{field} cannot be stored: {found[1]}",
            details=[{"field": field, "in": "body", "error": found[1]}],
        )
    return value


async def check_body(request: Request) -> None:
    """Strict JSON with storable text, or 422 (see :func:`strict_json`)."""
    body = await request.body()
    if body:
        strict_json(body)


class ApiRoute(APIRoute):
    """A ``/v1`` route: documents its error answers and checks the caller first."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {m.upper() for m in kwargs.get("methods") or ["GET"]}
        codes = [401, 403, 422, 503]
        if methods & _BODY_METHODS:
            codes.append(413)
        responses = dict(kwargs.get("responses") or {})
        for code, doc in error_responses(codes).items():
            responses.setdefault(code, doc)
        kwargs["responses"] = responses
        kwargs["openapi_extra"] = {
            "security": [{name: []} for name in SECURITY_SCHEMES],
            **(kwargs.get("openapi_extra") or {}),
        }
        # Set before APIRoute.__init__, which builds the handler.
        self.needed_scope: Scope = "read" if methods <= {"GET", "HEAD"} else "write"
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needed = self.needed_scope

        async def checked(request: Request) -> Response:
            state = await server_state(request)
            principal = await authenticate(state, request)
            principal.require(needed)
            request.state.principal = principal
            check_query_and_path(request)
            if request.method in _BODY_METHODS:
                try:
                    await check_body(request)
                except ClientDisconnect:
                    # The body limit cut the stream (or the client left): nothing to do;
                    # the 413 (if any) is sent by the BodyLimit middleware.
                    return Response(status_code=499)
            return await handler(request)

        return checked
