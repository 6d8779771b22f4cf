"""``mount_ui`` puts the dashboard under ``/ui`` of the API server: static files (at a
path holding their version, cached for a year), sign-in and sign-out, and the router of
every module of :mod:`runyard.ui.pages` (each gives its paths under ``/ui``)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import pkgutil
import urllib.parse
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from ..service import Service
from . import live, pages
from .render import make_environment, render
from .session import (
    SignedInPost,
    SignInNeeded,
    SignInRefused,
    UiForbidden,
    clear_session_cookie,
    safe_next,
    set_session_cookie,
    sign_in,
)
from .state import UiState, ui_state

STATIC = Path(__file__).parent / "static"
#: A year: a static file's URL changes with its content.
STATIC_MAX_AGE_S = 365 * 86400


class VersionedStatic(StaticFiles):
    """Static files whose URL holds their version: cached for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE_S}, immutable"
        return response


def static_version() -> str:
    """A digest of the static files' names and contents (their URL changes with them)."""
    h = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(STATIC).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


auth_router = APIRouter()


@auth_router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", {"next": safe_next(next), "error": None}, viewer=None)


@auth_router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui",
) -> Response:
    """Exchange an API key for a session cookie; the form again, saying why, if refused."""
    try:
        _viewer, value = await sign_in(ui_state(request), key)
    except SignInRefused as exc:
        context = {"next": safe_next(next), "error": exc.message}
        return render(request, "login.html", context, viewer=None, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(request, response, value)
    return response


@auth_router.post("/logout")
async def logout(request: Request, _viewer: SignedInPost) -> Response:
    response = RedirectResponse("/ui/login?flash=Signed+out", status_code=303)
    clear_session_cookie(request, response)
    return response


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInNeeded)
    target = "/ui/login?" + urllib.parse.urlencode({"next": exc.next_url})
    if request.headers.get("hx-request") or "text/event-stream" in request.headers.get(
        "accept", ""
    ):
        # htmx and event streams cannot follow a redirect to a page: tell them.
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UiForbidden)
    return render(
        request,
        "error.html",
        {"title": "Not allowed", "message": exc.message},
        viewer=None,
        status_code=403,
    )


def page_modules() -> list[str]:
    """The modules of :mod:`runyard.ui.pages`, by name."""
    return sorted(
        m.name for m in pkgutil.iter_modules(pages.__path__) if not m.name.startswith("_")
    )


def mount_ui(
    app: FastAPI,
    service: Service,
    *,
    server_key: str | None = None,
    stopping: asyncio.Event | None = None,
    worker_seen_s: float = 30.0,
) -> None:
    """Serve the dashboard under ``/ui`` of ``app``, calling ``service``; ``server_key``
    is the server's own admin key (``RUNYARD_API_KEY``), which may sign in too;
    ``stopping`` is set when the server begins to stop (live streams then end);
    ``worker_seen_s``: how recent a worker's heartbeat makes it live."""
    version = static_version()
    app.state.ui = UiState(
        service=service,
        server_key=server_key,
        templates=make_environment(version),
        static_version=version,
        stopping=stopping,
        worker_seen_s=worker_seen_s,
    )
    app.mount(f"/ui/static/{version}", VersionedStatic(directory=STATIC), name="ui-static")
    app.add_exception_handler(SignInNeeded, _sign_in_needed)
    app.add_exception_handler(UiForbidden, _forbidden)
    routers = [auth_router, live.router]
    for name in page_modules():
        module = importlib.import_module(f"{pages.__name__}.{name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    has_overview = False
    for router in routers:
        app.include_router(router, prefix="/ui", include_in_schema=False)
        has_overview = has_overview or any(getattr(r, "path", None) == "/" for r in router.routes)
    home = "/ui/" if has_overview else "/ui/runs"

    async def ui_home() -> RedirectResponse:
        return RedirectResponse(home, status_code=307)

    app.add_api_route("/ui", ui_home, methods=["GET"], include_in_schema=False)
