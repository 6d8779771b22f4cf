"""``runyard server``: the HTTP API on one port."""

from __future__ import annotations

import typer

from .. import loop
from . import output
from .common import DatabaseOption, announce_database, require_database, setup_logging


def server(
    host: str = typer.Option(
        "127.0.0.1", "--host", envvar="RUNYARD_HOST", help="Interface to listen on"
    ),
    port: int = typer.Option(
        8000, "--port", "-p", min=0, max=65535, envvar="RUNYARD_PORT", help="Port to listen on"
    ),
    database_url: str = DatabaseOption,
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve the HTTP API until SIGTERM or Ctrl-C.

    Workers run apart (runyard worker): the server never imports workflow code. The
    database must exist (runyard db upgrade creates it)."""
    import dataclasses

    from ..config import Settings
    from ..errors import StoreUnavailable
    from ..server import ServerSettings, create_app, serve
    from ..service import Core, Service

    setup_logging(log_level)
    settings = ServerSettings.from_env()
    if database_url:
        settings = dataclasses.replace(settings, database_url=database_url)
    probe = Service(Core(Settings.from_env(settings.database_url)))
    announce_database("server", probe.settings.database_url)
    try:
        require_database(probe.settings.database_url, probe.core)
    except StoreUnavailable as exc:  # serve anyway: 503 until the database is back
        output.err.print(f"runyard server: {exc.message}", markup=False, highlight=False)
    finally:
        probe.close()
    # The app builds its own Runyard with the server's short database retry window, so
    # an unreachable database answers 503 within seconds.
    loop.run(serve(create_app(settings=settings), host=host, port=port))
