"""Fixtures shared by the suite.

Every storage-touching test runs on both backends through the ``db_url`` fixture: a
fresh SQLite file under ``tmp_path``, or a fresh PostgreSQL database cloned from a
template migrated once per session. ``RUNYARD_TEST_BACKENDS=sqlite`` (or ``postgres``)
narrows the run on purpose; otherwise an unreachable PostgreSQL fails the suite with
instructions instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runyard import Runyard
from runyard.config import Settings
from runyard.store import open_store
from runyard.store.sqlite import sqlite_path
from runyard.worker.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "RUNYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [
    b.strip()
    for b in os.environ.get("RUNYARD_TEST_BACKENDS", "sqlite,postgres").split(",")
    if b.strip()
]
PG_HELP = (
    "PostgreSQL is not reachable at {url} ({error}).\n"
    "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
    "or run only the SQLite half on purpose with RUNYARD_TEST_BACKENDS=sqlite."
)


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A database migrated once, cloned by each PostgreSQL test."""
    if "postgres" not in BACKENDS:
        yield None
        return
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(PG_HELP.format(url=PG_ADMIN_URL, error=exc), returncode=3)
    name = f"runyard_tmpl_{os.getpid()}"
    with admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
        open_store(_pg_url(name)).upgrade()
        yield name
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, pg_template: str | None) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    with fresh_database(backend, tmp_path, pg_template) as url:
        yield url


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path, pg_template: str | None) -> Iterator[str]:
    """A fresh, migrated database of ``backend``: a SQLite file in ``folder``, or a
    PostgreSQL database cloned from ``pg_template`` (dropped afterwards)."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'runyard.db'}"
        open_store(url).upgrade()
        yield url
        return
    if pg_template is None:
        pytest.skip("RUNYARD_TEST_BACKENDS leaves PostgreSQL out on purpose")
    with pg_database(pg_template) as url:
        yield url


def raw_sql(db_url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the test's database directly, past the store (``%s``
    placeholders on either backend); its rows, if it returns any."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(db_url), timeout=10)
        try:
            with conn:
                return conn.execute(statement.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()
    with psycopg.connect(db_url, autocommit=True) as pg:
        cur = pg.execute(statement.encode(), params)
        return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def pg_database(template: str) -> Iterator[str]:
    """A new database cloned from ``template``, dropped afterwards."""
    name = f"runyard_t_{secrets.token_hex(5)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_db_url(pg_template: str | None) -> Iterator[str]:
    """A fresh PostgreSQL database, for the tests that only make sense there (they opt
    out of SQLite by using this fixture instead of ``db_url``)."""
    if pg_template is None:
        pytest.skip("RUNYARD_TEST_BACKENDS leaves PostgreSQL out on purpose")
    with pg_database(pg_template) as url:
        yield url


def make_yard(db_url: str, **settings: Any) -> Runyard:
    """A Runyard on ``db_url`` with test-friendly timings (short leases, fast polling)."""
    values = {"lease_s": 2.0, "poll_s": 0.2, **settings}
    return Runyard(settings=dataclasses.replace(Settings.from_env(db_url), **values))


@contextlib.asynccontextmanager
async def running_worker(yard: Runyard, **kwargs: Any) -> AsyncIterator[Worker]:
    """An in-process worker for the duration of the block."""
    w: Worker = yard.worker(**{"concurrency": 8, "shutdown_timeout_s": 5, **kwargs})
    task = asyncio.create_task(w.run())
    try:
        yield w
    finally:
        w.stop()
        await asyncio.wait_for(task, 30)


class WorkerProcess:
    """``runyard worker`` in a real process, for kill -9 and SIGSTOP tests."""

    def __init__(
        self,
        app: str,
        db_url: str,
        *,
        concurrency: int = 8,
        lease_s: float = 2.0,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        shutdown_timeout_s: float = 5.0,
    ) -> None:
        self.app = app
        self.db_url = db_url
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.env = env or {}
        self.log = log
        self.shutdown_timeout_s = shutdown_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "RUNYARD_DATABASE_URL": self.db_url,
            "RUNYARD_LEASE_S": str(self.lease_s),
            "RUNYARD_POLL_S": "0.2",
            **self.env,
        }
        out: Any = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runyard",
                "worker",
                self.app,
                "--concurrency",
                str(self.concurrency),
                "--shutdown-timeout",
                str(self.shutdown_timeout_s),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=out,
            cwd=str(ROOT),
        )
        if out is not subprocess.DEVNULL:
            out.close()  # the child has its own descriptor
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


@pytest.fixture
def worker_procs() -> Iterator[list[WorkerProcess]]:
    """Worker processes started by the test; all stopped afterwards."""
    procs: list[WorkerProcess] = []
    yield procs
    for p in procs:
        if p.alive():
            p.signal(signal.SIGCONT)
            p.kill()


@pytest.fixture
def yard(db_url: str) -> Iterator[Runyard]:
    """A Runyard on a fresh database, closed after the test."""
    y = make_yard(db_url)
    yield y
    y.close()
