"""``runyard server``: the HTTP API (and, later, the dashboard) on one port."""

from __future__ import annotations

import typer

from .. import loop
from .common import DatabaseOption, setup_logging


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

    Workers run apart (runyard worker): the server never imports workflow code."""
    import dataclasses

    from ..server import ServerSettings, create_app, serve

    setup_logging(log_level)
    settings = ServerSettings.from_env()
    if database_url:
        settings = dataclasses.replace(settings, database_url=database_url)
    # The app builds its own Runyard with the server's short database retry window, so
    # an unreachable database answers 503 within seconds.
    loop.run(serve(create_app(settings=settings), host=host, port=port))
