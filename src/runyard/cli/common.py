"""Helpers shared by the command groups."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import typer

from ..config import DEFAULT_URL, redacted_url
from ..errors import NotFound
from . import output

if TYPE_CHECKING:
    from ..app import Runyard
    from ..client import Client
    from ..service import Core, Service

T = TypeVar("T")

DatabaseOption = typer.Option(
    None,
    "--database-url",
    envvar="RUNYARD_DATABASE_URL",
    help=f"sqlite:///file.db or postgresql://... (default {DEFAULT_URL})",
    show_envvar=True,
)


def describe_database(database_url: str) -> str:
    """The database as a process announces it: the URL, its password redacted, and for
    SQLite the file's absolute path."""
    shown = redacted_url(database_url)
    if database_url.startswith("sqlite:"):
        path = sqlite_file(database_url)
        if path is not None:
            return f"{shown} ({path})"
    return shown


def sqlite_file(database_url: str) -> Path | None:
    """The absolute path of a SQLite database file (None: not SQLite, or in memory)."""
    if not database_url.startswith("sqlite:"):
        return None
    path = unquote(urlsplit(database_url).path)
    path = path if database_url.startswith("sqlite:////") else path.removeprefix("/")
    if not path or path == ":memory:":
        return None
    return Path(path).absolute()


def announce_database(command: str, database_url: str) -> None:
    """Say on stderr which database ``runyard COMMAND`` uses (stdout stays for results)."""
    output.err.print(
        f"runyard {command}: database {describe_database(database_url)}",
        markup=False,
        highlight=False,
    )


def require_database(database_url: str, core: Core) -> None:
    """Refuse (NotFound, naming the path or URL it looked for) a database that does not
    exist or has no Runyard schema: only ``runyard db upgrade`` and ``runyard dev``
    create one."""
    if core.schema_version() is not None:
        return
    where = describe_database(database_url)
    file = sqlite_file(database_url)
    what = (
        f"no Runyard database at {file}"
        if file is not None and not file.exists()
        else f"the database {where} has no Runyard schema"
    )
    raise NotFound(
        f"{what} (RUNYARD_DATABASE_URL or --database-url names it; default {DEFAULT_URL}): "
        "create it with `runyard db upgrade`, or run this where your database is",
        details=[{"field": "database_url", "error": "no Runyard database", "url": where}],
    )


def load_app(target: str) -> Runyard:
    """The ``Runyard`` named by ``module:attribute`` (the current folder is importable)."""
    from ..app import Runyard

    module_name, _, attr = target.partition(":")
    if not module_name:
        raise ValueError(f"expected MODULE:ATTRIBUTE, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if attr:
        yard = getattr(module, attr)
    else:
        found = [v for v in vars(module).values() if isinstance(v, Runyard)]
        if len(found) != 1:
            raise ValueError(
                f"{module_name} has {len(found)} Runyard objects; name one: {module_name}:NAME"
            )
        yard = found[0]
    if not isinstance(yard, Runyard):
        raise ValueError(f"{target} is a {type(yard).__name__}, not a Runyard")
    return yard


def on_service(
    database_url: str | None,
    call: Callable[[Service], Awaitable[T]],
    *,
    command: str | None = None,
) -> T:
    """``call(service)`` on the database of ``database_url`` (``RUNYARD_DATABASE_URL``,
    default ``sqlite:///.runyard/runyard.db``), which must exist (migrated to the newest
    schema first); for the commands that work on the database directly rather than
    through a server. With ``command``, say which database it is on stderr."""
    from ..config import Settings
    from ..service import Core, Service

    settings = Settings.from_env(database_url)
    if command is not None:
        announce_database(command, settings.database_url)
    service = Service(Core(settings))
    try:
        require_database(settings.database_url, service.core)
    except BaseException:
        service.close()
        raise

    async def main() -> T:
        try:
            return await call(service)
        finally:
            await asyncio.to_thread(service.close)

    return asyncio.run(main())


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# -- commands that go through the HTTP API ----------------------------------------------------

UrlOption = typer.Option(
    None,
    "--url",
    envvar="RUNYARD_URL",
    help="The Runyard server (default http://127.0.0.1:8000)",
    show_envvar=True,
)
ApiKeyOption = typer.Option(
    None, "--api-key", envvar="RUNYARD_API_KEY", help="An API key", show_envvar=True
)
JsonOption = typer.Option(False, "--json", help="Print JSON (for scripts) instead of tables")


class BadJSON(ValueError):
    """An option that must hold JSON does not (exit status 2)."""


def parse_json(text: str | None, option: str) -> Any:
    """The JSON value of ``option`` (``@file`` reads a file, ``-`` standard input);
    ``None`` when it was not given."""
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise BadJSON(f"{option}: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadJSON(f"{option} is not valid JSON ({exc}): {text[:80]!r}") from None


def make_client(url: str | None, api_key: str | None) -> Client:
    """The SDK client the CLI's API commands use, like any other client."""
    from ..client import Client

    return Client(url, api_key, max_retries=2, backoff_s=0.25)
