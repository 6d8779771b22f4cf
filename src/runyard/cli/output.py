"""How the CLI prints: Rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _width() -> int | None:
    """Piped output is not cut to 80 columns (ids must stay whole for scripts and grep)."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else 240


console = Console(soft_wrap=True, width=_width())
err = Console(stderr=True, soft_wrap=True)

STATUS_STYLE = {
    "SCHEDULED": "cyan",
    "QUEUED": "cyan",
    "RUNNING": "blue",
    "PAUSED": "yellow",
    "SUCCEEDED": "green",
    "PARTIAL_SUCCEEDED": "yellow",
    "FAILED": "red",
    "CANCELED": "magenta",
    "CRASHED": "red",
    "INVALID": "red",
    "completed": "green",
    "failed": "red",
    "discarded": "magenta",
    "processing": "blue",
    "queued": "cyan",
}


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, with nothing else (not through Rich, which
    would wrap and colour it)."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_json_line(value: Any) -> None:
    """``value`` as one line of JSON on stdout (JSON Lines, for streams), flushed."""
    sys.stdout.write(json.dumps(jsonable(value), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def when(value: datetime | float | None) -> str:
    """A time as local ``YYYY-MM-DD HH:MM:SS``."""
    if value is None:
        return "-"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value).astimezone()
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def status(value: object) -> str:
    text = str(getattr(value, "value", value))
    style = STATUS_STYLE.get(text)
    return f"[{style}]{text}[/{style}]" if style else escape(text)


def short(value: Any, width: int = 60) -> str:
    """A JSON value on one line, cut to ``width`` characters."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def table(
    columns: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None
) -> None:
    """Rows under ``columns``; the first column (an id) is never cut, the others are
    shortened with an ellipsis when the terminal is narrow."""
    body = [list(row) for row in rows]
    if not body:
        console.print("[dim](none)[/dim]")
        return
    t = Table(title=title, show_edge=False, header_style="bold")
    for i, name in enumerate(columns):
        if i == 0:
            widest = max(len(name), *(len(row[0]) for row in body))
            t.add_column(name, no_wrap=True, min_width=widest)
        else:
            t.add_column(name, no_wrap=True, overflow="ellipsis")
    for row in body:
        t.add_row(*row)
    console.print(t, soft_wrap=False)


def more(next_cursor: str | None) -> None:
    """Under a page of a list: how to ask for the next one, if there is one."""
    if next_cursor:
        console.print(f"[dim]more: --cursor {next_cursor}[/dim]", highlight=False)


def fields(pairs: Iterable[tuple[str, str]]) -> None:
    """Label / value lines, for one record."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    for label, value in pairs:
        t.add_row(label, value)
    console.print(t, soft_wrap=False)


def error(message: str) -> None:
    """``error: <message>`` on stderr, on one line."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
