"""The ``runyard`` command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ..errors import RunyardError
from . import db, worker

app = typer.Typer(
    name="runyard",
    help="Durable workflow runs on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.command("worker")(worker.worker)

err = Console(stderr=True)


def main() -> None:
    """Entry point: a clear one-line error and a non-zero exit on failure."""
    try:
        app()
    except RunyardError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        sys.exit(1)
    except (ValueError, ImportError, AttributeError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
