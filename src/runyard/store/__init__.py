"""Storage: one database for everything, SQLite or PostgreSQL, chosen by URL."""

from __future__ import annotations

from ..config import DEFAULT_URL
from .base import Store
from .records import Checkpoint, Claimed, Fence, RunFilter
from .tx import Tx


def open_store(url: str) -> Store:
    """The store for ``url`` (``sqlite:///file.db`` or ``postgresql://...``)."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://...")


__all__ = [
    "DEFAULT_URL",
    "Checkpoint",
    "Claimed",
    "Fence",
    "RunFilter",
    "Store",
    "Tx",
    "open_store",
]
