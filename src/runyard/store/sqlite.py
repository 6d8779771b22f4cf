"""The SQLite backend: one file, WAL, ``BEGIN IMMEDIATE`` for every write (RELIABILITY.md
rule 8).

``synchronous`` is FULL by default: a commit survives power loss, which an accepted run
must. ``RUNYARD_SQLITE_SYNCHRONOUS=NORMAL`` trades that for speed (a crash of the
process still loses nothing; a power cut may lose the last commits).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlparse

from .. import jsonutil
from ..errors import StorageFull
from . import wakebus
from .base import Store, Tx

log = logging.getLogger("runyard.store")

BUSY_TIMEOUT_MS = 30_000


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` URL."""
    parsed = urlparse(url)
    path = unquote(parsed.path)
    if url.startswith("sqlite:////"):
        return path
    return path[1:] if path.startswith("/") else path


#: Parameters SQLite takes as JSON arrays.
_SEQUENCES = (list, tuple)


#: The folder of the default database (``config.DEFAULT_URL``): whatever creates it, it
#: carries a ``.gitignore`` that keeps the database and the dev key file out of git.
PRIVATE_FOLDER = ".runyard"


def keep_private(folder: str) -> None:
    """Give ``folder`` a ``.gitignore`` ignoring everything in it, if it is the default
    database's folder and has none yet."""
    if os.path.basename(folder) != PRIVATE_FOLDER:
        return
    ignore = os.path.join(folder, ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w") as f:
            f.write("# Runyard's database and dev key: never committed\n*\n")


class SQLiteStore(Store):
    backend = "sqlite"
    needs_polling = True
    own_queries = frozenset({"start_runs"})  # PostgreSQL's claims start the runs themselves
    #: One writer: a purge holds everyone off for a batch of 50, then rests three times as
    #: long (a claim's p99 1.4-2x what it is without a purge; 4,000 runs purged a second).
    purge_batch = 50
    purge_rest = 3.0

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = sqlite_path(url)
        sync = os.environ.get("RUNYARD_SQLITE_SYNCHRONOUS", "FULL").upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("RUNYARD_SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA")
        self.synchronous = sync
        #: Where the processes on this database name their wake-up sockets.
        self.wake_dir = os.path.abspath(self.path) + ".wake"
        self._publisher = wakebus.Publisher(self.wake_dir) if wakebus.supported() else None
        #: This store's own listeners: what it publishes, its hubs were told already.
        self._listeners: weakref.WeakSet[wakebus.Listener] = weakref.WeakSet()

    @property
    def precise_wakeups(self) -> bool:
        return wakebus.supported()

    def publish(self, announcements: set[tuple[str, str]]) -> None:
        """Send what a committed transaction announced to every process listening. Never
        raises: the transaction is committed, and the announcement only a hint."""
        if self._publisher is None:
            return
        try:
            own = {listener.token for listener in list(self._listeners) if not listener.lost}
            self._publisher.publish(sorted(announcements), skip=own)
        except Exception as exc:
            log.warning("could not send wake-ups (%s); waiters fall back to polling", exc)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()

    def connect(self) -> sqlite3.Connection:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        keep_private(folder)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.create_function("ry_now", 0, time.time)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = OFF")
        return conn

    @contextmanager
    def transaction(
        self,
        conn: Any,
        *,
        write: bool,
        pipeline: bool = True,
        durable: bool = True,
        wait: bool = True,
        lock_wait_s: float | None = None,
    ) -> Iterator[Tx]:
        if self.observer is not None:
            self.observer.transaction(write)
        cur = conn.cursor()
        lax = write and not durable and self.synchronous != "NORMAL"
        if lax:
            # In WAL mode NORMAL skips the fsync of this commit only; the next FULL
            # commit's fsync of the same WAL file makes this one durable too.
            cur.execute("PRAGMA synchronous = NORMAL")
        if not wait:
            cur.execute("PRAGMA busy_timeout = 0")
        # A deferred transaction that later writes fails at once with "database is
        # locked", ignoring the busy timeout; IMMEDIATE takes the write lock up front.
        try:
            if write and wait:
                self._begin_immediate(cur, lock_wait_s)
            else:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException:
            self._restore(cur, lax, wait)
            raise

        def commit() -> None:
            cur.execute("COMMIT")
            if tx.announcements:
                self.publish(tx.announcements)
                self.changes.committed(tx.announcements)

        tx = Tx(self, cur, commit=commit if write else None)
        try:
            try:
                yield tx
            except BaseException:
                if not tx.finished:
                    cur.execute("ROLLBACK")
                raise
            else:
                if write:
                    tx.finish()
                else:
                    cur.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                raise
            # The disk (or the file's max_page_count) is full: nothing of this write is
            # kept (a failed COMMIT leaves its transaction open: rolled back here), reads
            # go on, and writes succeed again once there is space.
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise StorageFull(
                "the database's disk is full: nothing was written; writes resume once "
                "space is freed"
            ) from exc
        finally:
            self._restore(cur, lax, wait)

    def _restore(self, cur: sqlite3.Cursor, lax: bool, wait: bool) -> None:
        """Undo what :meth:`transaction` changed on the connection, and close ``cur``."""
        if lax:
            cur.execute(f"PRAGMA synchronous = {self.synchronous}")
        if not wait:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.close()

    @staticmethod
    def _begin_immediate(cur: sqlite3.Cursor, lock_wait_s: float | None) -> None:
        """Take the write lock, retrying every few hundred microseconds for up to
        ``lock_wait_s`` (at most the busy timeout; one try at least). (SQLite's own busy
        handler sleeps 1, 2, 5, 10 ... ms between tries, so the lock often sits free while
        every writer sleeps.)"""
        cur.execute("PRAGMA busy_timeout = 0")
        try:
            delay = 0.00005
            longest = BUSY_TIMEOUT_MS / 1000
            wait_s = longest if lock_wait_s is None else min(lock_wait_s, longest)
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 0.001)
        finally:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def adapt(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        # (Every statement's parameters pass here: the common case, no list, stays cheap.)
        for v in params.values():
            if isinstance(v, _SEQUENCES):
                return {
                    k: jsonutil.dumps(list(v)) if isinstance(v, _SEQUENCES) else v
                    for k, v in params.items()
                }
        return params

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc) or "disk I/O" in str(exc)
        )

    def run_script(self, tx: Tx, sql: str) -> None:
        statement = ""
        for line in sql.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                tx.cursor.execute(statement)
                statement = ""
        rest = [line for line in statement.splitlines() if not line.lstrip().startswith("--")]
        if "".join(rest).strip():  # (what follows the last statement may be comments)
            raise ValueError(f"incomplete statement in migration: {statement[:80]!r}")

    def data_version(self, conn: sqlite3.Connection) -> int:
        """Changes when another connection commits: a cheap way to notice other processes."""
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def change_source(self, *, work: bool, runs: bool) -> wakebus.Listener | None:
        """The wake bus (every run's changes, always); None where it is not supported."""
        if not wakebus.supported():
            return None
        listener = wakebus.Listener(self.wake_dir)
        if work:
            listener.want_work()
        self._listeners.add(listener)
        return listener

    def commit_counter(self) -> DataVersion:
        return DataVersion(self)


class DataVersion:
    """``PRAGMA data_version`` on a connection of its own (see
    :meth:`SQLiteStore.commit_counter`)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._conn = store.connect()

    def read(self) -> int:
        return self._store.data_version(self._conn)

    def close(self) -> None:
        self._conn.close()
