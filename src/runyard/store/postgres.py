"""The PostgreSQL backend (psycopg 3): row claims with ``FOR UPDATE SKIP LOCKED``,
per-key locks for flow control, LISTEN/NOTIFY wake-ups (a hint, never the only path)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .base import Store, Tx

#: Channels the database announces on (see the runs trigger in the migrations).
WAKE_CHANNEL = "runyard_wake"
RUN_CHANNEL = "runyard_run"


def conninfo(url: str) -> str:
    """psycopg accepts ``postgresql://`` URLs; ``postgres://`` and SQLAlchemy-style
    ``postgresql+psycopg://`` are normalized."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class PostgresStore(Store):
    backend = "postgres"
    needs_polling = False

    def connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(
            conninfo(self.url),
            row_factory=dict_row,
            connect_timeout=5,
            application_name="runyard",
        )
        return conn

    @contextmanager
    def transaction(self, conn: Any, *, write: bool, pipeline: bool = True) -> Iterator[Tx]:
        if not (write and pipeline):
            with conn.transaction(), conn.cursor() as cur:
                yield Tx(self, cur)
            return
        # Writes are pipelined: statements sent with Tx.send travel together.
        with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as cur:
            yield Tx(self, cur, conn, pipeline)

    def adapt(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        return params

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        return isinstance(
            exc,
            psycopg.errors.DeadlockDetected
            | psycopg.errors.SerializationFailure
            | psycopg.errors.AdminShutdown
            | psycopg.errors.CannotConnectNow,
        )

    def run_script(self, tx: Tx, sql: str) -> None:
        tx.cursor.execute(sql.encode())

    def listen_connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(
            conninfo(self.url),
            autocommit=True,
            connect_timeout=5,
            application_name="runyard-listen",
        )
        conn.execute(f"LISTEN {WAKE_CHANNEL}")
        conn.execute(f"LISTEN {RUN_CHANNEL}")
        return conn
