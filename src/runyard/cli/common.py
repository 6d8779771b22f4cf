"""Helpers shared by the command groups."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..app import Runyard

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


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
