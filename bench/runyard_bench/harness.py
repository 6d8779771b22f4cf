"""What every figure of ``runyard bench`` shares: the options, the output (one JSON line
per figure on stdout, progress on stderr), the fresh databases, the worker processes, the
CPU accounting and the session that holds them together."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import runyard
from runyard import Runyard

from .measure import postgres_cpu_s, proc_cpu_s
from .workflows import YARD_TARGET

PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class BenchOptions:
    backends: list[str]
    database_url: str | None = None
    pg_admin_url: str = PG_ADMIN_DEFAULT
    runs: int = 2000
    wf3_runs: int = 1000
    latency_runs: int = 200
    latency_warmup: int = 20
    latency_jitter_s: float = 0.05
    workers: int = 2
    concurrency: int = 16
    start_concurrency: int = 32
    step_count: int = 20
    step_runs: int = 50
    sql_runs: int = 50
    http_runs: int = 2000  # the HTTP figures (http_figures.py); 0 skips them all
    http_live_runs: int = 200
    http_wake_runs: int = 100
    http_concurrency: int = 32
    mcp_runs: int = 200  # MCP tool round trips per transport (mcp_figures.py); 0 skips
    timeout_s: float = 300.0
    log_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def log(*parts: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


# -- which code was measured -----------------------------------------------------------

#: The engine's sources: the ``runyard`` package.
ENGINE_DIR = Path(runyard.__file__).resolve().parent


def _engine_rev() -> str | None:
    """The git revision the engine was measured at (``+dirty`` with local changes)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ENGINE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "."],
            cwd=ENGINE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def _engine_digest() -> str:
    """A digest of the engine's Python and SQL sources: which code was measured, even
    when the working tree has uncommitted changes."""
    h = hashlib.sha1()
    for path in sorted([*ENGINE_DIR.rglob("*.py"), *ENGINE_DIR.rglob("*.sql")]):
        if "__pycache__" in path.parts:
            continue
        h.update(str(path.relative_to(ENGINE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


# -- CPU accounting --------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by this process, the workers and (PostgreSQL) the server."""

    def __init__(self, worker_pids: list[int], postgres: bool) -> None:
        self.worker_pids = worker_pids
        self.postgres = postgres
        self._start = self._sample()

    def _sample(self) -> dict[str, float | None]:
        w = [proc_cpu_s(p) for p in self.worker_pids]
        return {
            "producer": time.process_time(),
            "workers": sum(x for x in w if x is not None) if w and None not in w else None,
            "postgres": postgres_cpu_s() if self.postgres else None,
        }

    def per_run_ms(self, n: int) -> dict[str, float | None]:
        end = self._sample()
        out: dict[str, float | None] = {}
        for k, v0 in self._start.items():
            v1 = end[k]
            out[k] = None if v0 is None or v1 is None else round(1000 * (v1 - v0) / n, 3)
        return out


# -- the databases ---------------------------------------------------------------------


def pg_url_for(admin_url: str, dbname: str) -> str:
    base, _, rest = admin_url.rpartition("/")
    query = ""
    if "?" in rest:
        query = "?" + rest.split("?", 1)[1]
    return f"{base}/{dbname}{query}"


@contextlib.contextmanager
def pg_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database ``name`` (one left by an earlier run dropped
    first), dropped afterwards; its URL."""
    import psycopg
    from psycopg import sql

    ident = sql.Identifier(name)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield pg_url_for(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(drop)


@contextlib.contextmanager
def fresh_database(backend: str, opts: BenchOptions, tmp: Path) -> Iterator[str]:
    """A new, empty database for ``backend``, removed afterwards."""
    if opts.database_url:
        yield opts.database_url
        return
    if backend.startswith("sqlite"):
        folder = tmp / backend
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    with pg_database(opts.pg_admin_url, f"runyard_bench_{os.getpid()}") as url:
        yield url


#: Runs of a workflow by outcome, and those not ended yet (the statuses are the engine's).
_OUTCOMES_SQL = (
    "SELECT coalesce(sum(CASE WHEN status = 'SUCCEEDED' THEN 1 ELSE 0 END), 0) AS ok, "
    "coalesce(sum(CASE WHEN status IN ('PARTIAL_SUCCEEDED', 'FAILED', 'CANCELED', 'CRASHED', "
    "'INVALID') THEN 1 ELSE 0 END), 0) AS bad FROM runs WHERE workflow = %s"
)
_ANY_OPEN_SQL = (
    "SELECT EXISTS (SELECT 1 FROM runs WHERE status IN "
    "('SCHEDULED', 'QUEUED', 'RUNNING', 'PAUSED') AND workflow = %s) AS open"
)


class StoreCounter:
    """Counts runs by status on a connection of its own (like the peers' counters)."""

    def __init__(self, y: Runyard) -> None:
        self.store = y.store
        self.conn = self.store.connect()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of ``sql`` (``%s`` placeholders on either backend)."""
        if self.store.backend == "sqlite":
            sql = sql.replace("%s", "?")
        with self.store.transaction(self.conn, write=False) as tx:
            tx.cursor.execute(sql, tuple(params))
            return tx.cursor.fetchone()

    def outcomes(self, workflow: str) -> tuple[int, int]:
        """(SUCCEEDED, ended otherwise) runs of ``workflow``."""
        row = self.one(_OUTCOMES_SQL, (workflow,))
        return int(row["ok"]), int(row["bad"])

    def any_open(self, workflow: str) -> bool:
        """Whether a run of ``workflow`` has not ended yet: the first open run found
        through the (workflow, status) index answers, so a poll costs little at any
        backlog. (A count of the open runs cost 108 ms per poll at the start of a
        100,000-run drain on PostgreSQL, every 0.5 s: a tenth of a core taken from the
        drain it measured.)"""
        return bool(self.one(_ANY_OPEN_SQL, (workflow,))["open"])

    def live_workers(self) -> int:
        return int(self.one("SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL")["n"])

    def close(self) -> None:
        self.store.close_connection(self.conn)


# -- worker processes ------------------------------------------------------------------


class WorkerProcs:
    """``runyard worker`` processes serving ``target`` (``MODULE:ATTRIBUTE``), stopped
    with SIGTERM."""

    def __init__(
        self,
        url: str,
        n: int,
        concurrency: int,
        env: dict[str, str],
        logs: Path,
        target: str = YARD_TARGET,
    ) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        full_env = {**os.environ, **env, "RUNYARD_DATABASE_URL": url}
        logs.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            path = logs / f"worker-{k}.log"
            argv = [
                sys.executable,
                "-m",
                "runyard",
                "worker",
                target,
                "--concurrency",
                str(concurrency),
                "--database-url",
                url,
                "--shutdown-timeout",
                "5",
                "--log-level",
                "warning",
            ]
            with open(path, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        env=full_env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            self.logs.append(path)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check(self) -> None:
        for p, path in zip(self.procs, self.logs, strict=True):
            if p.poll() is not None:
                tail = path.read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"worker {p.pid} exited with {p.returncode}; log {path}:\n{tail}"
                )

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(10)
                codes.append(None)
        return codes


# -- waiting and starting ----------------------------------------------------------------


async def poll(
    pred: Callable[[], bool],
    timeout: float,
    what: str,
    workers: WorkerProcs | None,
    interval: float = 0.02,
) -> float:
    """Await ``pred()`` (sync, run in a thread) until true; perf_counter() at success."""
    deadline = time.perf_counter() + timeout
    while True:
        if await asyncio.to_thread(pred):
            return time.perf_counter()
        if workers is not None:
            workers.check()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def start_many(y: Runyard, workflow: str, n: int, in_flight: int) -> float:
    """Start ``n`` runs through ``yard.start`` (``in_flight`` calls at once, as the
    throughput phase does); the seconds it took."""
    nxt = 0

    async def starter() -> None:
        nonlocal nxt
        while nxt < n:
            i = nxt
            nxt += 1
            await y.start(workflow, i)

    t = time.perf_counter()
    await asyncio.gather(*(starter() for _ in range(max(1, min(in_flight, n)))))
    return time.perf_counter() - t


async def run_one(y: Runyard, workflow: str, value: int, timeout: float = 60) -> None:
    """Start one run and wait for its result."""
    h = await y.start(workflow, value)
    await h.result(timeout=timeout)


# -- the session -----------------------------------------------------------------------


@dataclass
class Session:
    """What the phases of one ``runyard bench`` invocation share."""

    tmp: Path
    logs: Path
    common: dict[str, Any]  # the fields of every line


@contextlib.asynccontextmanager
async def session(opts: BenchOptions, prefix: str) -> AsyncIterator[Session]:
    """A temporary folder for worker logs, the fields every line carries; SIGTERM cancels
    the benchmark like Ctrl-C (workers stopped, fresh databases dropped on the way out);
    ``RUNYARD_SQLITE_SYNCHRONOUS`` as it was afterwards (see :func:`sqlite_durability`)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    logs = Path(opts.log_dir) if opts.log_dir else tmp / "logs"
    common: dict[str, Any] = {
        "engine_rev": _engine_rev(),
        "engine_digest": _engine_digest(),
        "host_cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        **opts.extra,
    }
    saved_sync = os.environ.get("RUNYARD_SQLITE_SYNCHRONOUS")
    ok = False
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    handled = False
    if me is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
            handled = True
    try:
        yield Session(tmp, logs, common)
        ok = True
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)
        if saved_sync is None:
            os.environ.pop("RUNYARD_SQLITE_SYNCHRONOUS", None)
        else:
            os.environ["RUNYARD_SQLITE_SYNCHRONOUS"] = saved_sync
        if ok and not opts.log_dir:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            log(f"kept {tmp} (worker logs under {logs})")


def sqlite_durability(backend: str) -> None:
    """The worker processes' SQLite durability for ``backend``: ``sqlite`` is the engine's
    default (a value from the caller's environment is not allowed to make the default
    figure look faster), ``sqlite-normal`` says so."""
    if backend == "sqlite-normal":
        os.environ["RUNYARD_SQLITE_SYNCHRONOUS"] = "NORMAL"
    elif backend == "sqlite":
        os.environ["RUNYARD_SQLITE_SYNCHRONOUS"] = "FULL"


__all__ = [
    "BenchOptions",
    "CpuMeter",
    "Session",
    "StoreCounter",
    "WorkerProcs",
    "backend_of",
    "emit",
    "fresh_database",
    "log",
    "pg_database",
    "poll",
    "run_one",
    "session",
    "sqlite_durability",
    "start_many",
]
