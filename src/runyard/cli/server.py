"""``runyard server``: the HTTP API (and, later, the dashboard) on one port."""

from __future__ import annotations

import asyncio

import typer

from .common import DatabaseOption, setup_logging


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on"),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535),
    database_url: str = DatabaseOption,
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve the HTTP API until SIGTERM or Ctrl-C.

    Workers run apart (runyard worker): the server never imports workflow code."""
    from ..app import Runyard
    from ..server import create_app, serve

    setup_logging(log_level)
    yard = Runyard(database_url) if database_url else None
    app = create_app(yard)
    try:
        asyncio.run(serve(app, host=host, port=port))
    finally:
        if yard is not None:
            yard.close()
