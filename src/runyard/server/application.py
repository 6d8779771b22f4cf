"""``create_app`` builds the FastAPI application; ``serve`` runs it with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.routing import Route

from .. import __version__, telemetry
from ..config import Settings
from ..service import Core, Service
from ..service.scheduler import Scheduler
from ..ui.app import mount_ui
from .auth import SECURITY_SCHEMES
from .docs import install_docs
from .errors import ErrorBoundary, install_handlers
from .fastpath import RunyardAPI
from .mcp_http import McpEndpoint
from .metrics import Metrics
from .middleware import BodyLimit, RequestMetrics
from .routes import deliveries, events, ops, runs, schedules, tasks, usage, workflows
from .settings import ServerSettings
from .state import LiveGate, ServerState

if TYPE_CHECKING:
    from ..app import Runyard

log = logging.getLogger("runyard.server")
#: FastAPI's telemetry settings where OpenTelemetry is not configured.
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def telemetry_config(settings: ServerSettings) -> TelemetryConfig:
    """FastAPI's telemetry: off, or where OpenTelemetry is configured a span per request
    (a server span, the parent of the runs the request starts) on Runyard's tracer
    provider (see runyard.telemetry), which reads the request's W3C ``traceparent``."""
    if not settings.telemetry:
        return TELEMETRY_OFF
    # (Runyard's provider exports as OTEL_* says: FastAPI adding an exporter of its own
    # from the environment would export every span twice.)
    config: TelemetryConfig = {"operation_spans": False, "auto_configure": False}
    if (tracing := telemetry.active()) is not None:
        config["tracer_provider"] = tracing.provider
    return config


DESCRIPTION = """Durable workflow runs over HTTP.

Send an API key as `x-api-key: <key>` or `Authorization: Bearer <key>` (every endpoint
but `/healthz`). GET needs the `read` scope, every other method `write`.

Errors have one shape: `{"error": {"code", "message", "details"}}`. Times are ISO 8601
in UTC (a time without a zone is read as UTC); durations are seconds. Lists are paged
with a cursor, also given in the `X-Pagination-Next` header.
"""


def create_app(yard: Runyard | None = None, *, settings: ServerSettings | None = None) -> FastAPI:
    """The HTTP API over ``yard`` (built from ``settings`` / ``RUNYARD_DATABASE_URL``
    when not given, and then closed with the app). Workflows are what workers published
    to the database: the server never imports user code."""
    settings = settings or ServerSettings.from_env()
    owns_service = yard is None
    if yard is None:
        base = Settings.from_env(settings.database_url)
        service = Service(Core(dataclasses.replace(base, db_retry_s=settings.db_retry_s)))
    else:
        service = yard.service
    _ = service.core.store  # an unsupported database URL fails here, not on a request
    metrics = Metrics()
    state = ServerState(
        service=service,
        settings=settings,
        metrics=metrics,
        live=LiveGate(settings.live_capacity, metrics),
        owns_service=owns_service,
    )
    mcp = McpEndpoint(state, settings.mcp_wait_s)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.stopping.clear()  # the same app may be served again after a stop
        try:
            await service.core.ensure_ready()
        except Exception as exc:
            # Start anyway: requests answer 503 until the database is back.
            log.warning("database not ready at start (%s); answering 503 until it is", exc)
        # The server waits for runs (live mode, long-polls, event streams): its process
        # hears of every run from the start, and its first request finds a hub to mark.
        service.core.hub()
        # Every server fires schedules too (no leader: see runyard.service.scheduler).
        scheduler_stop = asyncio.Event()
        scheduler = asyncio.create_task(Scheduler(service).run(scheduler_stop))
        async with mcp.running():  # the MCP sessions of /mcp end with the app
            yield
            state.stopping.set()
        scheduler_stop.set()
        await asyncio.gather(scheduler, return_exceptions=True)
        await state.drain()
        if state.owns_service:
            await asyncio.to_thread(service.close)

    app = RunyardAPI(
        # FastAPI's native OpenTelemetry: on only where configured; the direct path of
        # POST /v1/runs (fastpath.py) serves only where it is off.
        telemetry=telemetry_config(settings),
        title="Runyard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        docs_url=None,  # served from the package by install_docs
        strict_content_type=False,  # a body without a Content-Type is read as JSON
        openapi_tags=[
            {"name": "runs", "description": "Start, follow and steer runs"},
            {"name": "workflows", "description": "What workers published"},
            {"name": "tasks", "description": "Saved run templates"},
            {"name": "events", "description": "Wake runs waiting for an event"},
            {"name": "usage", "description": "Credits"},
            {"name": "ops", "description": "Health and metrics"},
        ],
    )
    app.state.runyard = state

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)
            doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    install_handlers(app)
    install_docs(app, "Runyard")
    app.include_router(ops.health_router)
    app.include_router(ops.metrics_router)
    for module in (workflows, runs, deliveries, tasks, schedules, events, usage):
        app.include_router(module.router)
    app.router.routes.append(Route("/mcp", endpoint=mcp))  # MCP, streamable HTTP
    mount_ui(  # /ui
        app,
        service,
        server_key=settings.api_key,
        stopping=state.stopping,
        worker_seen_s=settings.worker_seen_s,
    )
    # Every route with its full path, for the Allow header of a 405 (errors.py).
    app.state.route_table = [
        *ops.health_router.routes,
        *ops.metrics_router.routes,
        *(r for m in (workflows, runs, tasks, schedules, events, usage) for r in m.router.routes),
    ]
    # Added innermost first: RequestMetrics sees every answer, the 413s included.
    app.add_middleware(ErrorBoundary, is_transient=service.is_transient)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


class _Server(uvicorn.Server):
    """uvicorn, told about the stop first so that long-polls and event streams answer at
    once instead of holding the graceful shutdown for their whole wait."""

    def __init__(self, config: uvicorn.Config, state: ServerState | None) -> None:
        super().__init__(config)
        self.app_state = state

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # serve() handles the signals itself and returns normally (uvicorn's own handling
        # re-raises the signal after stopping, which would end the calling process).
        yield

    def begin_stop(self) -> None:
        if self.app_state is not None:
            self.app_state.stopping.set()
        self.should_exit = True

    async def shutdown(self, sockets: Any = None) -> None:
        if self.app_state is not None:
            self.app_state.stopping.set()
        await super().shutdown(sockets)


async def serve(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, install_signals: bool = True
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM (or until ``app.state.runyard.stopping`` is
    set), finishing open requests within ``RUNYARD_SHUTDOWN_S``; then return."""
    state = getattr(app.state, "runyard", None)
    state = state if isinstance(state, ServerState) else None
    timeout = state.settings.shutdown_timeout_s if state is not None else 5.0
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        # uvicorn builds each access line before the logger drops it: only when shown.
        access_log=logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO),
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=max(1, round(timeout)),
    )
    server = _Server(config, state)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, server.begin_stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signals on this platform

    async def stop_when_asked() -> None:
        if state is not None:
            await state.stopping.wait()
            server.should_exit = True

    watcher = asyncio.ensure_future(stop_when_asked())
    try:
        await server.serve()
    finally:
        watcher.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
