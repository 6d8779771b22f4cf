"""``runyard worker``."""

from __future__ import annotations

import dataclasses

import typer

from .. import loop
from .common import announce_database, load_app, require_database, setup_logging


def worker(
    app: str = typer.Argument(..., help="The Runyard to serve, as MODULE:ATTRIBUTE"),
    concurrency: int = typer.Option(
        16, "--concurrency", "-c", min=1, help="Items executed at once"
    ),
    database_url: str = typer.Option(None, "--database-url", envvar="RUNYARD_DATABASE_URL"),
    lease: float = typer.Option(None, "--lease", help="Lease in seconds (RUNYARD_LEASE_S)"),
    shutdown_timeout: float = typer.Option(
        30.0,
        "--shutdown-timeout",
        help="Seconds to finish work after SIGTERM before handing it back",
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Claim and execute runs of APP's workflows until SIGTERM.

    The database must exist (runyard db upgrade creates it)."""
    setup_logging(log_level)
    yard = load_app(app)
    if database_url:
        yard.settings = dataclasses.replace(yard.settings, database_url=database_url)
    announce_database("worker", yard.settings.database_url)
    require_database(yard.settings.database_url, yard.core)
    w = yard.worker(concurrency=concurrency, lease_s=lease, shutdown_timeout_s=shutdown_timeout)

    async def main() -> None:
        try:
            await w.run(install_signals=True)
        finally:
            await yard.aclose()

    loop.run(main())
