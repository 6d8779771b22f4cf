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

import contextvars
import functools
import hmac
import json
import math
import sys
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from .. import keys
from ..errors import (
    Forbidden,
    InvalidInput,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from ..rules import JSON_DEPTH_MAX
from ..schemas import Scope
from .errors import error_responses, validation_details, validation_summary
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
    """The caller, from its API key; nothing is done before this answers, so a database
    that is away here is a 503 saying that nothing was done."""
    try:
        return await _authenticate(state, request)
    except StoreUnavailable as exc:
        raise StoreUnavailable(exc.message, details={"outcome": "not_applied"}) from exc


async def _authenticate(state: ServerState, request: Request) -> Principal:
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


#: Problems a body check lists at most (a body of a million bad strings answers fast).
MAX_PROBLEMS = 20
#: How deep a request body may nest: a stored payload's limit plus the levels of the
#: body around it (``{"inputs": [{"input": ...}]}``). Each payload's own limit is
#: checked by the service, naming the field.
BODY_DEPTH_MAX = JSON_DEPTH_MAX + 4

Loc = tuple[str | int, ...]


def _unstorable(value: Any, loc: Loc, found: list[tuple[Loc, str]]) -> None:
    """Add to ``found`` each value the database cannot store, where it is and what is
    wrong with it: a string (or key) with a NUL or a lone surrogate, a number that is not
    finite (``NaN``, ``Infinity``, or ``1e999``, which parses as infinity), or a value
    nested deeper than :data:`BODY_DEPTH_MAX` (named by its top-level field)."""
    if len(found) >= MAX_PROBLEMS:
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            found.append((loc, "not a finite number"))
        return
    if isinstance(value, str):
        if "\x00" in value:
            found.append((loc, "a NUL character"))
        elif not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                found.append((loc, "an invalid Unicode sequence"))
        return
    if not isinstance(value, dict | list):
        return
    if len(loc) >= BODY_DEPTH_MAX:
        problem = (loc[:1], f"nested deeper than {JSON_DEPTH_MAX} levels")
        if problem not in found:  # (each top-level field once)
            found.append(problem)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k or not k.isascii():
                _unstorable(k, (*loc, "<key>"), found)
            _unstorable(v, (*loc, k), found)
    else:
        for i, v in enumerate(value):
            _unstorable(v, (*loc, i), found)


def check_query_and_path(request: Request) -> None:
    """The path and the query hold text that can be stored: no NUL character, and
    percent-encoded bytes that are UTF-8 (``%ff`` would become U+FFFD, and be stored)."""
    if "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b""):
        raise InvalidInput(
            "the path or the query contains a NUL character",
            details=[{"field": "query", "in": "query", "error": "NUL character"}],
        )
    raw_path = request.scope.get("raw_path") or b""
    for where, raw in (("path", raw_path), ("query", request.scope.get("query_string", b""))):
        if b"%" not in raw:
            continue
        try:
            urllib.parse.unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"the {where} is not UTF-8 once percent-decoded",
                details=[{"field": where, "in": where, "error": "percent-encoded bytes not UTF-8"}],
            ) from None


#: One decoder (``json.loads`` with options builds one a call). It reads ``NaN`` and
#: ``Infinity`` as numbers, which :func:`_unstorable` then refuses, naming their field.
_STRICT = json.JSONDecoder()


def _refusal(problems: list[dict[str, Any]]) -> InvalidInput:
    """The 422 for ``problems`` (in the shape of FastAPI's validation errors)."""
    details = validation_details(problems)
    return InvalidInput(validation_summary(details), details=details)


def body_problems(body: bytes) -> tuple[Any, list[dict[str, Any]]]:
    """The JSON value of ``body`` and what is wrong with it, as FastAPI's validation
    errors are (empty when it is strict JSON with storable text, nested no deeper than
    the limit). A body that is not UTF-8 or
    not JSON at all raises :class:`InvalidInput` at once, with the line and column of
    the error: nothing else can be said about it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the body is not UTF-8 text (byte {exc.start} is not valid UTF-8)",
            details=[{"field": "body", "in": "body", "error": "not UTF-8", "type": "utf8"}],
        ) from None
    try:
        value = _STRICT.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            details=[
                {
                    "field": "body",
                    "in": "body",
                    "error": f"malformed JSON: {exc.msg}",
                    "type": "json_invalid",
                    "line": exc.lineno,
                    "column": exc.colno,
                }
            ],
        ) from None
    except ValueError:
        # An integer of more than 4,300 digits, which Python does not convert
        limit = sys.get_int_max_str_digits()
        raise InvalidInput(
            f"the body holds an integer of more than {limit} digits",
            details=[
                {
                    "field": "body",
                    "in": "body",
                    "error": f"integer of more than {limit} digits",
                    "type": "json_invalid",
                }
            ],
        ) from None
    except RecursionError:
        raise InvalidInput(
            f"the body is nested too deep: a value may nest at most {JSON_DEPTH_MAX} levels "
            "(arrays or objects one inside the other)",
            details=[
                {
                    "field": "body",
                    "in": "body",
                    "error": f"nested deeper than {JSON_DEPTH_MAX} levels",
                    "type": "too_deep",
                    "max_depth": JSON_DEPTH_MAX,
                }
            ],
        ) from None
    found: list[tuple[Loc, str]] = []
    _unstorable(value, (), found)
    problems = [{"loc": ("body", *loc), "msg": error, "type": "unstorable"} for loc, error in found]
    return value, problems


def strict_json(body: bytes) -> Any:
    """The JSON value of ``body`` if it is strict JSON with storable text (see
    :func:`body_problems`), else 422 naming each bad field."""
    value, problems = body_problems(body)
    if problems:
        raise _refusal(problems)
    return value


def body_rules(
    dependant: Dependant,
) -> Callable[[dict[str, Any]], list[tuple[str, str, str]]] | None:
    """The ``cross_field_problems`` of the model of ``dependant``'s body, if it has one."""
    for param in dependant.body_params:
        rules = getattr(param.field_info.annotation, "cross_field_problems", None)
        if rules is not None:
            return cast(Callable[[dict[str, Any]], list[tuple[str, str, str]]], rules)
    return None


def query_names(dependant: Dependant) -> frozenset[str]:
    """The names of the query parameters ``dependant`` and its dependencies read."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_names(sub)
    return frozenset(names)


def unknown_query(request: Request, known: frozenset[str]) -> list[dict[str, Any]]:
    """A validation error (FastAPI's shape) for each query parameter the route does not
    read, naming the ones it does."""
    expected = ", ".join(sorted(known)) or "none"
    return [
        {
            "loc": ("query", name),
            "msg": f"unknown query parameter (this route takes: {expected})",
            "type": "unknown_parameter",
        }
        for name in dict.fromkeys(request.query_params.keys())
        if name not in known
    ]


def check_content_type(request: Request) -> None:
    """A body is JSON: sent as ``application/json`` (or ``+json``), or without a
    ``Content-Type`` (then read as JSON); any other type is refused with 415, saying
    which header to send (``curl -d`` sends a form type unless told otherwise)."""
    given = request.headers.get("content-type")
    if given is None:
        return
    media = given.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        f"the body is sent as {media or 'an empty Content-Type'}; send it as JSON with the "
        'header "Content-Type: application/json"',
        details=[{"field": "content-type", "in": "header", "error": "not application/json"}],
    )


#: What the body check found wrong with the request being handled: FastAPI's request
#: validation then runs all the same, and one 422 lists its errors and these together
#: (:class:`ApiRoute`); when the validation finds nothing, the endpoint is not called.
_refused: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "runyard_refused", default=None
)


def _guarded(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint``, not called while the body check refused the request."""

    @functools.wraps(endpoint)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        problems = _refused.get()
        if problems:
            raise _refusal(problems)
        return await endpoint(*args, **kwargs)

    return guarded


class ApiRoute(APIRoute):
    """A ``/v1`` route: documents its error answers and checks the caller first."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {m.upper() for m in kwargs.get("methods") or ["GET"]}
        codes = [401, 403, 422, 503]
        if methods & _BODY_METHODS:
            codes += [413, 415, 507]
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
        super().__init__(path, _guarded(endpoint), **kwargs)
        #: The query parameters this route reads: any other is refused (422), not
        #: ignored (``?page=2`` on a cursor-paged list would answer page 1 forever).
        self.query_names = query_names(self.dependant)
        #: The rules between the body's fields (``cross_field_problems`` of its model),
        #: checked with the body so that one 422 names them with the other bad fields.
        self.body_rules = body_rules(self.dependant)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needed = self.needed_scope

        async def checked(request: Request) -> Response:
            state = await server_state(request)
            principal = await authenticate(state, request)
            principal.require(needed)
            request.state.principal = principal
            check_query_and_path(request)
            problems = unknown_query(request, self.query_names)
            if request.method in _BODY_METHODS:
                try:
                    body = await request.body()
                except ClientDisconnect:
                    # The body limit cut the stream (or the client left): nothing to do;
                    # the 413 (if any) is sent by the BodyLimit middleware.
                    return Response(status_code=499)
                if body:
                    check_content_type(request)
                    value, found = body_problems(body)
                    problems += found
                    if self.body_rules is not None and isinstance(value, dict):
                        problems += [
                            {"loc": ("body", field), "msg": message, "type": "value_error"}
                            for field, message, _ in self.body_rules(value)
                        ]
            token = _refused.set(problems)
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if not problems:
                    raise
                # One 422 for the request: FastAPI's errors and the body check's.
                # (A field both refuse is named once, with the body check's words: "not a
                # finite number" says more than "Input should be a finite number", or than
                # each member of a union failing.)
                ours = [tuple(p["loc"]) for p in problems]
                errors = [
                    e
                    for e in exc.errors()
                    if not any(tuple(e.get("loc", ()))[: len(o)] == o for o in ours)
                ]
                raise RequestValidationError([*errors, *problems]) from None
            finally:
                _refused.reset(token)

        return checked
