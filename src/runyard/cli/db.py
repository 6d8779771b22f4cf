"""``runyard db``."""

from __future__ import annotations

import typer
from rich.console import Console

from ..config import Settings
from ..store import open_store
from .common import DatabaseOption

app = typer.Typer(help="Database schema.", no_args_is_help=True)
console = Console()


@app.command("upgrade")
def upgrade(database_url: str = DatabaseOption) -> None:
    """Apply the migrations the database does not have yet."""
    settings = Settings.from_env(database_url)
    applied = open_store(settings.database_url).upgrade()
    if applied:
        console.print(f"applied migration(s) {', '.join(f'{n:04d}' for n in applied)}")
    else:
        console.print("the database is up to date")
