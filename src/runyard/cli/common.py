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

import typer

if TYPE_CHECKING:
    from ..app import Runyard
    from ..client import Client
    from ..service import Service

T = TypeVar("T")

DatabaseOption = typer.Option(
    None,
    "--database-url",
    envvar="RUNYARD_DATABASE_URL",
    help="sqlite:///file.db or postgresql://... (default sqlite:///runyard.db)",
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


def on_service(database_url: str | None, call: Callable[[Service], Awaitable[T]]) -> T:
    """``call(service)`` on the database of ``database_url`` (``RUNYARD_DATABASE_URL``,
    default ``sqlite:///runyard.db``), migrated first; for the commands that work on the
    database directly rather than through a server."""
    from ..config import Settings
    from ..service import Core, Service

    service = Service(Core(Settings.from_env(database_url)))

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
