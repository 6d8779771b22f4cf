"""``runyard db``."""

from __future__ import annotations

import asyncio
import math

import typer
from rich.console import Console

from ..config import Settings
from ..service import Core, Service
from . import output
from .common import (
    DatabaseOption,
    JsonOption,
    announce_database,
    require_database,
)

app = typer.Typer(
    help="Database schema and retention.", no_args_is_help=True, rich_markup_mode=None
)
console = Console()


@app.command("upgrade")
def upgrade(database_url: str = DatabaseOption) -> None:
    """Apply the migrations the database does not have yet (creating the database, if a
    SQLite file, the first time: the only command besides dev that does)."""
    settings = Settings.from_env(database_url)
    announce_database("db upgrade", settings.database_url)
    service = Service(Core(settings, auto_migrate=False))
    try:
        applied = service.core.migrate()
    finally:
        service.close()
    if applied:
        console.print(f"applied migration(s) {', '.join(f'{n:04d}' for n in applied)}")
    else:
        console.print("the database is up to date")


@app.command("purge")
def purge(
    days: float = typer.Option(
        None,
        "--days",
        help="Purge runs that ended more than this many days ago: a positive number, "
        "fractions allowed (default RUNYARD_RETENTION_DAYS, 30)",
    ),
    as_json: bool = JsonOption,
    database_url: str = DatabaseOption,
) -> None:
    """Delete ended runs older than the retention period, with their items, steps,
    outputs and logs (usage stays counted). Workers also do this every hour or so."""
    from ..app import Runyard

    if days is not None and not (math.isfinite(days) and days > 0):
        raise typer.BadParameter(
            f"must be a positive number of days, not {days:g} (0 would purge every ended "
            "run at once; to keep runs longer, give a larger number)",
            param_hint="--days",
        )
    yard = Runyard(database_url)
    announce_database("db purge", yard.settings.database_url)
    try:
        require_database(yard.settings.database_url, yard.core)
    except BaseException:
        yard.close()
        raise
    older_than = yard.settings.retention_days if days is None else days

    async def main() -> int:
        try:
            return await yard.purge(older_than)
        finally:
            await yard.aclose()

    purged = asyncio.run(main())
    if as_json:
        output.print_json({"purged": purged, "older_than_days": older_than})
        return
    console.print(
        f"purged {purged} run(s) that ended more than {older_than:g} day(s) ago", highlight=False
    )
