"""Signing in to the dashboard with an API key, and who is looking.

A browser signs in once with an API key (``/ui/login``); it gets a session cookie
(httpOnly, SameSite=Lax, Secure over https, path ``/ui``) that names the key by id and
carries an expiry and an HMAC of both, keyed with the key's stored digest. Nothing is
kept in a process, so any server on the database accepts it; every request looks the key
up, so a revoked key's sessions stop at once; the key itself is never stored in the
browser, and a stolen cookie cannot be extended.

Changes need the ``write`` scope and a CSRF token (an HMAC of the session, keyed the same
way) in the form field ``csrf`` or the ``X-CSRF-Token`` header, which the layout sets
for htmx on ``<body>``: a cross-site form cannot read it, and a read key's POST is
refused (403) whatever it sends.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from .. import keys
from .state import UiState, ui_state

COOKIE = "runyard_session"
#: How long a session lasts, seconds (then sign in again).
SESSION_TTL_S = 12 * 3600
#: The id of the server's own admin key (``RUNYARD_API_KEY``) when it is not an issued key.
SERVER_KEY_ID = "env:RUNYARD_API_KEY"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is signed in: the key's id, name and scopes, and the CSRF token of the session."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    csrf: str

    @property
    def can_write(self) -> bool:
        return keys.allows(self.scopes, "write")


class SignInNeeded(Exception):
    """No valid session: a browser is sent to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in first")
        self.next_url = next_url


class UiForbidden(Exception):
    """Signed in, but not allowed to do this (answered 403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SignInRefused(Exception):
    """The key given at sign-in is not accepted; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _mac(digest: str, purpose: str, key_id: str, expires: int) -> str:
    msg = f"runyard-ui|{purpose}|{key_id}|{expires}".encode()
    return hmac.new(digest.encode(), msg, hashlib.sha256).hexdigest()


async def _server_key_applies(state: UiState) -> bool:
    """Whether the server's ``RUNYARD_API_KEY`` signs in as the server's admin key (it
    is set and is not a key issued with ``runyard keys create``, whose record applies)."""
    key = state.server_key
    if not key:
        return False
    if state.server_key_issued is None:
        state.server_key_issued = keys.well_formed(key) and await state.service.api_key_issued(
            keys.digest(key)
        )
    return not state.server_key_issued


async def _key(state: UiState, key_id: str) -> tuple[str, tuple[str, ...], str] | None:
    """The live key ``key_id``: its name, scopes and digest."""
    if key_id == SERVER_KEY_ID:
        if state.server_key and await _server_key_applies(state):
            return "server key (RUNYARD_API_KEY)", ("admin",), keys.digest(state.server_key)
        return None
    found = await state.service.api_key_by_id(key_id)
    if found is None:
        return None
    record, digest = found
    return record.name or record.id, record.scopes, digest


async def sign_in(state: UiState, key: str) -> tuple[Viewer, str]:
    """The viewer for API key ``key`` and the session cookie's value;
    :class:`SignInRefused` saying why when the key is not accepted."""
    key = key.strip()
    if not key:
        raise SignInRefused("enter an API key")
    server_key = state.server_key
    if (
        server_key
        and hmac.compare_digest(key.encode(), server_key.encode())
        and await _server_key_applies(state)
    ):
        key_id = SERVER_KEY_ID
    else:
        if not keys.well_formed(key):
            raise SignInRefused(
                "this is not a Runyard API key (keys start with ry_; create one with "
                "runyard keys create)"
            )
        found = await state.service.api_key(keys.digest(key))
        if found is None:
            raise SignInRefused("unknown or revoked API key")
        key_id = found.id
        await state.service.touch_api_key(key_id)
    expires = int(time.time()) + SESSION_TTL_S
    value = await _session_value(state, key_id, expires)
    viewer = await _viewer_of(state, value)
    assert value is not None and viewer is not None
    return viewer, value


async def _session_value(state: UiState, key_id: str, expires: int) -> str | None:
    found = await _key(state, key_id)
    if found is None:
        return None
    return f"{expires}.{_mac(found[2], 'session', key_id, expires)}.{key_id}"


async def _viewer_of(state: UiState, value: str | None) -> Viewer | None:
    """The viewer of a session cookie's value, if it is valid now."""
    if not value:
        return None
    parts = value.split(".", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    expires, mac, key_id = int(parts[0]), parts[1], parts[2]
    if expires < time.time():
        return None
    found = await _key(state, key_id)
    if found is None:
        return None
    name, scopes, digest = found
    if not hmac.compare_digest(mac, _mac(digest, "session", key_id, expires)):
        return None
    return Viewer(key_id, name, scopes, _mac(digest, "csrf", key_id, expires)[:40])


def set_session_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_TTL_S,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path="/ui", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the dashboard, never another site."""
    if not target:
        return "/ui"
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc or not parsed.path.startswith("/ui") or "\\" in target:
        return "/ui"
    return target


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer; a browser without a valid session goes to the sign-in page."""
    found = await _viewer_of(ui_state(request), request.cookies.get(COOKIE))
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInNeeded(target)
    return found


async def _csrf_checked(request: Request, v: Viewer) -> None:
    token = request.headers.get("x-csrf-token")
    if not token:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            field = form.get("csrf")
            token = field if isinstance(field, str) else None
    if not token or not hmac.compare_digest(token, v.csrf):
        raise UiForbidden(
            "this form's CSRF token is missing or not this session's: reload the page and try again"
        )


async def signed_in_post(request: Request, v: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """A POST of any signed-in viewer (signing out), with the session's CSRF token."""
    await _csrf_checked(request, v)
    return v


async def writer(request: Request, v: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """A viewer allowed to change things: the ``write`` scope and the session's CSRF
    token; 403 otherwise."""
    if not v.can_write:
        raise UiForbidden(
            f"your API key ({', '.join(v.scopes) or 'no scope'}) can only look: changes "
            "need a key with the write scope"
        )
    await _csrf_checked(request, v)
    return v


ViewerDep = Annotated[Viewer, Depends(viewer)]
WriterDep = Annotated[Viewer, Depends(writer)]
SignedInPost = Annotated[Viewer, Depends(signed_in_post)]
