"""Named SQL queries, one file per backend (``sql/<backend>/queries.sql``).

Each query starts with a ``-- name: <name>`` line. Queries are loaded once; the same
names must exist for every backend (a test checks this).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.M)


@functools.cache
def load_queries(backend: str) -> dict[str, LiteralString]:
    text = (resources.files("runyard.store") / "sql" / backend / "queries.sql").read_text()
    parts = _NAME.split(text)
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = (
            "\n".join(
                line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
            )
            .strip()
            .rstrip(";")
        )
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice for {backend}")
        queries[name] = sql  # LiteralString: read from our own files, never built
    return queries


def migrations(backend: str) -> list[tuple[int, str, str]]:
    """``(number, name, sql)`` of every migration of ``backend``, in order."""
    folder = resources.files("runyard.store") / "sql" / backend / "migrations"
    found = []
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(found)
