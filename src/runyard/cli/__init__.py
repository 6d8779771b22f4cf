"""The ``runyard`` command line: one module per command group.

``db``, ``keys``, ``worker``, ``server`` and ``dev`` touch the database directly; ``run``,
``runs``, ``schedules``, ``tasks``, ``workflows``, ``notify`` and ``waiters`` go through the
HTTP API with the SDK, like any client (``--url``/``RUNYARD_URL``,
``--api-key``/``RUNYARD_API_KEY``).
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points, version

import typer

from ..errors import RunyardError
from . import (
    db,
    dev,
    events,
    keys,
    mcp,
    run,
    runs,
    schedules,
    server,
    tasks,
    webhooks,
    worker,
    workflows,
)
from .output import error

app = typer.Typer(
    name="runyard",
    help="Durable workflow runs on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: a flag is shown as a flag (Rich's tables label every one "<bool>").
    rich_markup_mode=None,
)


def _version(show: bool) -> None:
    if show:
        sys.stdout.write(f"runyard {version('runyard')}\n")
        raise typer.Exit()


@app.callback()
def _main(
    _show_version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Durable workflow runs on SQLite or PostgreSQL."""


app.command("dev")(dev.dev)
app.command("server")(server.server)
app.command("worker")(worker.worker)
app.command("run")(run.run)
app.add_typer(runs.app, name="runs")
app.add_typer(tasks.app, name="tasks")
app.add_typer(schedules.app, name="schedules")
app.add_typer(workflows.app, name="workflows")
app.command("notify")(events.notify)
app.command("waiters")(events.waiters)
app.add_typer(keys.app, name="keys")
app.add_typer(webhooks.app, name="webhook-secret")
app.add_typer(db.app, name="db")
app.command("mcp")(mcp.mcp)
# Commands other packages add (entry point group ``runyard.commands``): ``runyard bench``
# of ``runyard_bench``, shipped beside this package, which never imports it.
for _command in entry_points(group="runyard.commands"):
    app.command(_command.name)(_command.load())


def main() -> None:
    """Entry point: a clear one-line error and a non-zero exit on failure."""
    try:
        app()
    except RunyardError as exc:
        error(exc.message)
        sys.exit(1)
    except (ValueError, ImportError, AttributeError) as exc:
        error(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
