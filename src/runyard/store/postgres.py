"""The PostgreSQL backend (psycopg 3): row claims with ``FOR UPDATE SKIP LOCKED``,
per-key locks for flow control, LISTEN/NOTIFY wake-ups (a hint, never the only path)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .base import RUN, WAKE, Store, Tx

#: Channels announcements are sent on (see Store.publish).
WAKE_CHANNEL = WAKE
RUN_CHANNEL = RUN


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
        # Writes are pipelined: statements sent with Tx.send travel together. What the
        # transaction announces is sent right after its COMMIT, in the same round trip,
        # in a transaction of its own: a NOTIFY inside the main transaction would take a
        # database-wide lock through its commit and serialize every writer.
        with conn.pipeline() as pipeline:
            with conn.transaction(), conn.cursor() as cur:
                tx = Tx(self, cur, conn, pipeline)
                yield tx
            if tx.announcements:
                items = sorted(tx.announcements)
                with conn.transaction():
                    tx.send("publish_fast_commit")
                    tx.send(
                        "publish",
                        {"channels": [c for c, _ in items], "payloads": [p for _, p in items]},
                    )

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
