"""``runyard bench``: end-to-end figures of the engine, one JSON line each on stdout.

Measured like the peers in ``shared/peers-bench`` (README.md there): a producer process
(this one) triggers runs with ``yard.start`` while worker processes started beforehand
(``python -m runyard worker runyard.bench:yard``) execute them; completion is read from
the store (throughput) or awaited with the engine's own wait API (latency).

Figures, per backend, on a fresh database each invocation:

* ``noop_runs_per_s``: N no-op runs (default 2,000) from the first ``start`` until the
  store shows no open run left (polled every 20 ms), all N then checked SUCCEEDED;
* ``three_step_workflows_per_s``: the same for a workflow of three no-op steps (1,000);
* ``trigger_to_complete_p50_ms`` / ``_p99_ms``: 20 warm-up runs, then 200 sequential
  runs, each from ``start`` to ``handle.result()``, a random 0-50 ms pause (not counted)
  before each so arrivals do not phase-lock to any polling;
* ``checkpointed_step_ms``: sequential runs of a workflow with K no-op steps and of one
  with none, interleaved: (median(t_K) - median(t_0)) / K;
* ``sql_per_run`` / ``sql_per_step``: statements and transactions the engine issues per
  run (producer + worker, counted in one process with an in-process worker);
* the HTTP figures through a ``runyard server`` process: see ``bench_http.py``.

This module is also the workflow module the worker processes serve (``yard`` below).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .app import Runyard
from .engine.context import Context

# -- the workflows ---------------------------------------------------------------------


async def _step_noop(x: int) -> int:
    return x


async def noop(ctx: Context, i: int) -> int:
    """No step at all: trigger, claim, complete."""
    return 1


async def three_steps(ctx: Context, i: int) -> int:
    """Three checkpointed no-op steps (like the peers' ``wf3``)."""
    await ctx.step("s1", _step_noop, 1)
    await ctx.step("s2", _step_noop, 2)
    await ctx.step("s3", _step_noop, 3)
    return 1


async def k_steps(ctx: Context, k: int) -> int:
    """``k`` checkpointed no-op steps (``k`` = 0 is a no-op run of the same shape)."""
    for j in range(k):
        await ctx.step(f"s{j}", _step_noop, j)
    return k


async def sleeper(ctx: Context, i: int) -> int:
    """Sleeps durably for an hour: a run that stays RUNNING, its item owned by nobody
    (the scale figures' sleeping runs, ``bench_scale.py``)."""
    await ctx.sleep("nap", 3600)
    return 1


def build_yard(database_url: str | None = None) -> Runyard:
    """A Runyard serving the benchmark workflows."""
    y = Runyard(database_url)
    y.workflow(name="noop")(noop)
    y.workflow(name="three_steps")(three_steps)
    y.workflow(name="k_steps")(k_steps)
    y.workflow(name="sleeper")(sleeper)
    return y


#: What the worker processes serve: ``runyard worker runyard.bench:yard``.
yard = build_yard()

# -- options and output ----------------------------------------------------------------

PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
NON_SUCCESS = ("PARTIAL_SUCCEEDED", "FAILED", "CANCELED", "CRASHED", "INVALID")


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
    http_runs: int = 2000  # the HTTP figures (bench_http.py); 0 skips them all
    http_live_runs: int = 200
    http_wake_runs: int = 100
    http_concurrency: int = 32
    timeout_s: float = 300.0
    log_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def log(*parts: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), as the peers use."""
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def _engine_rev() -> str | None:
    """The git revision the engine was measured at (``+dirty`` with local changes)."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "."],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


#: The benchmark's own modules: not part of the engine's digest.
_BENCH_MODULES = ("bench.py", "bench_clone.py", "bench_http.py", "bench_scale.py")


def _engine_digest() -> str:
    """A digest of the package's Python and SQL sources: which code was measured, even
    when the working tree has uncommitted changes."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha1()
    for path in sorted([*here.rglob("*.py"), *here.rglob("*.sql")]):
        if path.name in _BENCH_MODULES or "__pycache__" in path.parts:
            continue
        h.update(str(path.relative_to(here)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


# -- CPU accounting (Linux /proc; None elsewhere) --------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def _postgres_cpu_s() -> float | None:
    """CPU of every process named postgres on this machine (the server under test)."""
    total, found = 0.0, False
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for p in pids:
        try:
            with open(f"/proc/{p}/comm") as f:
                if not f.read().startswith("postgres"):
                    continue
        except OSError:
            continue
        cpu = _proc_cpu_s(int(p))
        if cpu is not None:
            total += cpu
            found = True
    return total if found else None


class CpuMeter:
    """CPU seconds used by this process, the workers and (PostgreSQL) the server."""

    def __init__(self, worker_pids: list[int], postgres: bool) -> None:
        self.worker_pids = worker_pids
        self.postgres = postgres
        self._start = self._sample()

    def _sample(self) -> dict[str, float | None]:
        w = [_proc_cpu_s(p) for p in self.worker_pids]
        return {
            "producer": time.process_time(),
            "workers": sum(x for x in w if x is not None) if w and None not in w else None,
            "postgres": _postgres_cpu_s() if self.postgres else None,
        }

    def per_run_ms(self, n: int) -> dict[str, float | None]:
        end = self._sample()
        out: dict[str, float | None] = {}
        for k, v0 in self._start.items():
            v1 = end[k]
            out[k] = None if v0 is None or v1 is None else round(1000 * (v1 - v0) / n, 3)
        return out


# -- the databases ---------------------------------------------------------------------


def _pg_url_for(admin_url: str, dbname: str) -> str:
    base, _, rest = admin_url.rpartition("/")
    query = ""
    if "?" in rest:
        query = "?" + rest.split("?", 1)[1]
    return f"{base}/{dbname}{query}"


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
    import psycopg

    name = f"runyard_bench_{os.getpid()}"
    with psycopg.connect(opts.pg_admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url_for(opts.pg_admin_url, name)
    finally:
        with psycopg.connect(opts.pg_admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class StoreCounter:
    """Counts runs by status on a connection of its own (like the peers' counters)."""

    def __init__(self, y: Runyard) -> None:
        self.store = y.store
        self.conn = self.store.connect()

    def _one(self, sql: str) -> Any:
        with self.store.transaction(self.conn, write=False) as tx:
            tx.cursor.execute(sql)
            return tx.cursor.fetchone()

    def outcomes(self, workflow: str) -> tuple[int, int]:
        """(SUCCEEDED, ended otherwise) runs of ``workflow`` (a fixed name of this module)."""
        bad = ", ".join(f"'{s}'" for s in NON_SUCCESS)
        row = self._one(
            "SELECT coalesce(sum(CASE WHEN status = 'SUCCEEDED' THEN 1 ELSE 0 END), 0) AS ok, "
            f"coalesce(sum(CASE WHEN status IN ({bad}) THEN 1 ELSE 0 END), 0) AS bad "
            f"FROM runs WHERE workflow = '{workflow}'"
        )
        return int(row["ok"]), int(row["bad"])

    def open_runs(self, workflow: str) -> int:
        """Runs of ``workflow`` not ended yet: read through the status index, so a poll
        costs O(open runs), not O(all runs) (a full count every 20 ms would load the
        database noticeably at tens of thousands of runs)."""
        row = self._one(
            "SELECT count(*) AS n FROM runs WHERE status IN "
            f"('SCHEDULED', 'QUEUED', 'RUNNING', 'PAUSED') AND workflow = '{workflow}'"
        )
        return int(row["n"])

    def live_workers(self) -> int:
        row = self._one("SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL")
        return int(row["n"])

    def close(self) -> None:
        self.store.close_connection(self.conn)


# -- worker processes ------------------------------------------------------------------


class WorkerProcs:
    """``runyard worker runyard.bench:yard`` processes, stopped with SIGTERM."""

    target = "runyard.bench:yard"  # MODULE:ATTRIBUTE served

    def __init__(self, url: str, n: int, concurrency: int, env: dict[str, str], logs: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        full_env = {**os.environ, **env, "RUNYARD_DATABASE_URL": url}
        logs.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            path = logs / f"worker-{k}.log"
            out = open(path, "wb")  # noqa: SIM115 - closed in stop()
            argv = [
                sys.executable,
                "-m",
                "runyard",
                "worker",
                self.target,
                "--concurrency",
                str(concurrency),
                "--database-url",
                url,
                "--shutdown-timeout",
                "5",
                "--log-level",
                "warning",
            ]
            self.procs.append(
                subprocess.Popen(
                    argv,
                    env=full_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            out.close()
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


# -- phases ----------------------------------------------------------------------------


async def _poll(
    pred: Any, timeout: float, what: str, workers: WorkerProcs | None, interval: float = 0.02
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


async def throughput(
    y: Runyard,
    counter: StoreCounter,
    workflow: str,
    n: int,
    opts: BenchOptions,
    workers: WorkerProcs,
    postgres: bool,
) -> dict[str, Any]:
    """Start ``n`` runs (``start_concurrency`` start() calls in flight, each one run) while
    the workers run; time until the n-th SUCCEEDED run is in the store."""
    base_ok, base_bad = await asyncio.to_thread(counter.outcomes, workflow)
    cpu = CpuMeter(workers.pids, postgres)
    started = threading.Event()

    async def all_started() -> float:
        await start_many(y, workflow, n, opts.start_concurrency)
        started.set()
        return time.perf_counter()

    def done() -> bool:
        # Every start() has committed its run before ``started`` is set, so no open run
        # left means all n ended; the final count below checks they SUCCEEDED.
        return started.is_set() and counter.open_runs(workflow) == 0

    t0 = time.perf_counter()
    enq = asyncio.create_task(all_started())
    try:
        t_done = await _poll(done, opts.timeout_s, f"{n} {workflow} runs", workers)
    finally:
        if not enq.done():
            enq.cancel()
    t_enq = await enq
    ok, bad = await asyncio.to_thread(counter.outcomes, workflow)
    if ok - base_ok != n or bad != base_bad:
        raise RuntimeError(
            f"{workflow}: {ok - base_ok} of {n} runs SUCCEEDED, {bad - base_bad} ended "
            "otherwise; see the worker logs"
        )
    cpu_ms = cpu.per_run_ms(n)
    r = {
        "n": n,
        "enqueue_s": t_enq - t0,
        "e2e_s": t_done - t0,
        "enqueue_per_s": n / (t_enq - t0),
        "e2e_per_s": n / (t_done - t0),
        "cpu_ms_per_run": cpu_ms,
    }
    log(
        f"{workflow}: started {n} in {r['enqueue_s']:.3f}s ({r['enqueue_per_s']:.0f}/s), "
        f"all SUCCEEDED after {r['e2e_s']:.3f}s ({r['e2e_per_s']:.0f}/s); CPU ms/run {cpu_ms}"
    )
    return r


async def _one(y: Runyard, workflow: str, value: int, timeout: float) -> None:
    h = await y.start(workflow, value)
    await h.result(timeout=timeout)


async def latency(y: Runyard, opts: BenchOptions) -> dict[str, Any]:
    rnd = random.Random(12345)
    for _ in range(opts.latency_warmup):
        await _one(y, "noop", 0, 60)
    lat: list[float] = []
    for _ in range(opts.latency_runs):
        if opts.latency_jitter_s > 0:
            await asyncio.sleep(rnd.uniform(0, opts.latency_jitter_s))
        t = time.perf_counter()
        await _one(y, "noop", 0, 60)
        lat.append((time.perf_counter() - t) * 1000.0)
    r = {
        "n": len(lat),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "mean_ms": sum(lat) / len(lat),
        "min_ms": min(lat),
        "max_ms": max(lat),
    }
    log(
        f"latency: p50={r['p50_ms']:.2f}ms p99={r['p99_ms']:.2f}ms "
        f"min={r['min_ms']:.2f} max={r['max_ms']:.2f}"
    )
    return r


async def step_cost(y: Runyard, opts: BenchOptions) -> dict[str, Any]:
    """Sequential k_steps(0) and k_steps(K) runs, interleaved; per-step difference."""
    k = opts.step_count
    for _ in range(5):
        await _one(y, "k_steps", 0, 60)
        await _one(y, "k_steps", k, 60)
    t0s: list[float] = []
    tks: list[float] = []
    for _ in range(opts.step_runs):
        t = time.perf_counter()
        await _one(y, "k_steps", 0, 60)
        t0s.append((time.perf_counter() - t) * 1000.0)
        t = time.perf_counter()
        await _one(y, "k_steps", k, 60)
        tks.append((time.perf_counter() - t) * 1000.0)
    m0, mk = percentile(t0s, 50), percentile(tks, 50)
    r = {
        "k": k,
        "n": len(t0s),
        "median_0_steps_ms": m0,
        f"median_{k}_steps_ms": mk,
        "per_step_ms": (mk - m0) / k,
        "per_step_ms_from_means": (sum(tks) / len(tks) - sum(t0s) / len(t0s)) / k,
    }
    log(f"step cost: 0 steps {m0:.2f} ms, {k} steps {mk:.2f} ms -> {r['per_step_ms']:.3f} ms/step")
    return r


# -- statement counting (in-process) ---------------------------------------------------


class _SqlStats:
    def __init__(self) -> None:
        self.by_query: collections.Counter[str] = collections.Counter()
        self.txns = 0
        self.write_txns = 0
        self.syncs = 0  # PostgreSQL pipeline syncs: waits for answers inside a transaction

    def snapshot(self) -> tuple[collections.Counter[str], int, int, int]:
        return collections.Counter(self.by_query), self.txns, self.write_txns, self.syncs


@contextlib.contextmanager
def counting_sql(y: Runyard) -> Iterator[_SqlStats]:
    """Count the named statements and the transactions of this process.

    Every statement the store runs goes through ``Tx`` (``q``/``q1``/``exec``, and
    ``send``/``send_many`` where the engine pipelines); nested calls (``q`` built on
    ``send`` or the reverse) count once, and ``send_many`` counts one per row."""
    from .store.base import Tx

    stats = _SqlStats()
    local = threading.local()
    patched: dict[str, Any] = {}

    def wrap(name: str, orig: Any, many: bool) -> Any:
        def counted(self: Any, query: str, params: Any = None, *a: Any, **kw: Any) -> Any:
            depth = getattr(local, "depth", 0)
            if depth == 0:
                stats.by_query[query] += (len(params) if params else 0) if many else 1
            local.depth = depth + 1
            try:
                return orig(self, query, params, *a, **kw)
            finally:
                local.depth = depth

        counted.__name__ = name
        return counted

    for name, many in (("q", False), ("exec", False), ("send", False), ("send_many", True)):
        orig = getattr(Tx, name, None)
        if orig is not None:
            patched[name] = orig
            setattr(Tx, name, wrap(name, orig, many))
    pipeline_cls: Any = None
    orig_sync: Any = None
    with contextlib.suppress(ImportError, AttributeError):
        from psycopg import Pipeline as pipeline_cls

        orig_sync = pipeline_cls.sync

        def sync(self: Any) -> Any:
            stats.syncs += 1
            return orig_sync(self)

        pipeline_cls.sync = sync
    store = y.store
    orig_tx = store.transaction

    @contextlib.contextmanager
    def transaction(conn: Any, *, write: bool, **kw: Any) -> Iterator[Any]:
        stats.txns += 1
        stats.write_txns += int(write)
        with orig_tx(conn, write=write, **kw) as tx:
            yield tx

    store.transaction = transaction  # type: ignore[method-assign]
    try:
        yield stats
    finally:
        for name, orig in patched.items():
            setattr(Tx, name, orig)
        if pipeline_cls is not None and orig_sync is not None:
            pipeline_cls.sync = orig_sync
        del store.transaction


async def sql_counts(y: Runyard, opts: BenchOptions) -> dict[str, dict[str, Any]]:
    """Statements and transactions per sequential run, producer and worker together."""
    w = y.worker(concurrency=opts.concurrency, shutdown_timeout_s=5)
    task = asyncio.create_task(w.run())
    out: dict[str, dict[str, Any]] = {}
    try:
        cases = [
            ("noop", "noop", 0),
            ("three_steps", "three_steps", 0),
            ("k_steps(0)", "k_steps", 0),
            (f"k_steps({opts.step_count})", "k_steps", opts.step_count),
        ]
        for _label, wf, arg in cases:
            for _ in range(5):
                await _one(y, wf, arg, 60)
        n = opts.sql_runs
        with counting_sql(y) as stats:
            for label, wf, arg in cases:
                q0, t0, w0, s0 = stats.snapshot()
                c0, wall0 = time.process_time(), time.perf_counter()
                for _ in range(n):
                    await _one(y, wf, arg, 60)
                c1, wall1 = time.process_time(), time.perf_counter()
                q1, t1, w1, s1 = stats.snapshot()
                q1.subtract(q0)
                by = {k: round(v / n, 2) for k, v in sorted(q1.items(), key=lambda kv: -kv[1]) if v}
                out[label] = {
                    "n": n,
                    "statements_per_run": round(sum(q1.values()) / n, 2),
                    "transactions_per_run": round((t1 - t0) / n, 2),
                    "write_transactions_per_run": round((w1 - w0) / n, 2),
                    "pipeline_syncs_per_run": round((s1 - s0) / n, 2),
                    "by_query": by,
                    "wall_ms_per_run": round(1000 * (wall1 - wall0) / n, 3),
                    "cpu_ms_per_run": round(1000 * (c1 - c0) / n, 3),
                }
                log(
                    f"sql {label}: {out[label]['statements_per_run']} statements, "
                    f"{out[label]['transactions_per_run']} transactions per run; {by}"
                )
    finally:
        w.stop()
        await asyncio.wait_for(task, 60)
    return out


# -- one backend -----------------------------------------------------------------------


async def bench_backend(
    backend: str, url: str, opts: BenchOptions, logs: Path, common: dict[str, Any]
) -> None:
    is_pg = not url.startswith("sqlite")
    label = backend
    base = {**common, "backend": label}
    if not is_pg:
        base["sqlite_synchronous"] = os.environ.get("RUNYARD_SQLITE_SYNCHRONOUS", "FULL").upper()
    y = build_yard(url)
    log(f"== {label}: {url}")
    await asyncio.to_thread(y.migrate)
    counter = StoreCounter(y)
    env = {}
    if not is_pg:
        env["RUNYARD_SQLITE_SYNCHRONOUS"] = base["sqlite_synchronous"]
    workers = WorkerProcs(url, opts.workers, opts.concurrency, env, logs / label)
    log(
        f"{label}: started {opts.workers} worker process(es) {workers.pids}, "
        f"concurrency {opts.concurrency} each (logs: {logs / label})"
    )
    setup = {"workers": opts.workers, "concurrency": opts.concurrency}
    try:
        await _poll(
            lambda: counter.live_workers() >= opts.workers,
            60,
            "workers to register",
            workers,
            interval=0.05,
        )
        # Warm-up: both workflows through the workers, and the producer's connections.
        await asyncio.gather(*(_one(y, "noop", i, 60) for i in range(20)))
        await asyncio.gather(*(_one(y, "three_steps", i, 60) for i in range(20)))

        method_tp = (
            "N runs started by one producer process with yard.start() "
            f"({opts.start_concurrency} start() calls in flight, each one run in its own "
            "start() call), executed by separate worker processes; value = N / (time from "
            "the first start() until the store shows none of them still open, polled every "
            "20 ms; then all N are checked to have SUCCEEDED)"
        )
        if opts.runs > 0:
            r = await throughput(y, counter, "noop", opts.runs, opts, workers, is_pg)
            emit(
                {
                    "figure": "noop_runs_per_s",
                    **base,
                    "value": round(r["e2e_per_s"], 1),
                    "unit": "runs/s",
                    "n": r["n"],
                    "e2e_s": round(r["e2e_s"], 3),
                    "enqueue_per_s": round(r["enqueue_per_s"], 1),
                    "start_concurrency": opts.start_concurrency,
                    **setup,
                    "cpu_ms_per_run": r["cpu_ms_per_run"],
                    "method": method_tp,
                }
            )
        if opts.wf3_runs > 0:
            r = await throughput(y, counter, "three_steps", opts.wf3_runs, opts, workers, is_pg)
            emit(
                {
                    "figure": "three_step_workflows_per_s",
                    **base,
                    "value": round(r["e2e_per_s"], 1),
                    "unit": "workflows/s",
                    "n": r["n"],
                    "e2e_s": round(r["e2e_s"], 3),
                    "enqueue_per_s": round(r["enqueue_per_s"], 1),
                    "start_concurrency": opts.start_concurrency,
                    **setup,
                    "cpu_ms_per_run": r["cpu_ms_per_run"],
                    "method": method_tp.replace(
                        "N runs", "N runs of 3 sequential no-op ctx.step() calls"
                    ),
                }
            )
        if opts.latency_runs > 0:
            r = await latency(y, opts)
            method_lat = (
                f"{opts.latency_warmup} warm-up runs, then {r['n']} sequential no-op runs; "
                "each timed from yard.start() to handle.result() returning in the producer "
                f"(worker processes execute); a random 0-{opts.latency_jitter_s * 1000:.0f} ms "
                "pause before each sample is not counted"
            )
            extra = {
                "mean_ms": round(r["mean_ms"], 3),
                "min_ms": round(r["min_ms"], 3),
                "max_ms": round(r["max_ms"], 3),
            }
            for p in ("p50", "p99"):
                emit(
                    {
                        "figure": f"trigger_to_complete_{p}_ms",
                        **base,
                        "value": round(r[f"{p}_ms"], 3),
                        "unit": "ms",
                        "n": r["n"],
                        **extra,
                        **setup,
                        "method": method_lat,
                    }
                )
        if opts.step_runs > 0 and opts.step_count > 0:
            r = await step_cost(y, opts)
            k = r["k"]
            emit(
                {
                    "figure": "checkpointed_step_ms",
                    **base,
                    "value": round(r["per_step_ms"], 4),
                    "unit": "ms/step",
                    "n": r["n"],
                    "k": k,
                    "median_0_steps_ms": round(r["median_0_steps_ms"], 3),
                    f"median_{k}_steps_ms": round(r[f"median_{k}_steps_ms"], 3),
                    "per_step_ms_from_means": round(r["per_step_ms_from_means"], 4),
                    **setup,
                    "method": f"{r['n']} sequential runs each of k_steps(0) and k_steps({k}) "
                    f"({k} no-op ctx.step() calls), interleaved, through the worker "
                    "processes, each timed start() -> result(); value = (median(t_"
                    f"{k}) - median(t_0)) / {k}",
                }
            )
    finally:
        codes = workers.stop()
        log(f"{label}: workers stopped (exit codes {codes})")
        counter.close()
    try:
        if opts.http_runs > 0:
            from .bench_http import http_figures

            await http_figures(label, url, opts, logs / label / "http", base, y)
        if opts.sql_runs > 0:
            counts = await sql_counts(y, opts)
            k = opts.step_count
            method_sql = (
                f"{opts.sql_runs} sequential runs with an in-process worker (concurrency "
                f"{opts.concurrency}) and the producer in one process; every named statement "
                "(Tx.q/exec/send/send_many, one per row) and transaction of the process "
                "counted, including background loops (heartbeat, recovery, control) over that "
                "time; BEGIN/COMMIT and the change watcher are not counted as statements; on "
                "PostgreSQL write transactions are pipelined, so statements are not round "
                "trips: pipeline_syncs_per_run counts the waits for answers inside them (each "
                "transaction also waits once for its COMMIT)"
            )
            for label_wf in ("noop", "three_steps"):
                c = counts[label_wf]
                emit(
                    {
                        "figure": "sql_per_run",
                        **base,
                        "workflow": label_wf,
                        "value": c["statements_per_run"],
                        "unit": "statements/run",
                        "n": c["n"],
                        "transactions_per_run": c["transactions_per_run"],
                        "write_transactions_per_run": c["write_transactions_per_run"],
                        **(
                            {"pipeline_syncs_per_run": c["pipeline_syncs_per_run"]} if is_pg else {}
                        ),
                        "wall_ms_per_run": c["wall_ms_per_run"],
                        "cpu_ms_per_run_one_process": c["cpu_ms_per_run"],
                        "by_query": c["by_query"],
                        "method": method_sql,
                    }
                )
            c0, ck = counts["k_steps(0)"], counts[f"k_steps({k})"]
            by: dict[str, float] = {}
            for name in set(c0["by_query"]) | set(ck["by_query"]):
                d = (ck["by_query"].get(name, 0) - c0["by_query"].get(name, 0)) / k
                if abs(d) >= 0.005:
                    by[name] = round(d, 3)
            emit(
                {
                    "figure": "sql_per_step",
                    **base,
                    "value": round((ck["statements_per_run"] - c0["statements_per_run"]) / k, 3),
                    "unit": "statements/step",
                    "n": c0["n"],
                    "k": k,
                    "transactions_per_step": round(
                        (ck["transactions_per_run"] - c0["transactions_per_run"]) / k, 3
                    ),
                    "cpu_ms_per_step_one_process": round(
                        (ck["cpu_ms_per_run"] - c0["cpu_ms_per_run"]) / k, 4
                    ),
                    "wall_ms_per_step_in_process": round(
                        (ck["wall_ms_per_run"] - c0["wall_ms_per_run"]) / k, 4
                    ),
                    "by_query": dict(sorted(by.items(), key=lambda kv: -kv[1])),
                    "method": method_sql + f"; (k_steps({k}) - k_steps(0)) / {k}",
                }
            )
    finally:
        await y.aclose()


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


async def run_bench(opts: BenchOptions) -> None:
    async with session(opts, "runyard-bench-") as run:
        for backend in opts.backends:
            sqlite_durability(backend)
            with fresh_database(backend, opts, run.tmp) as url:
                extra = {}
                if backend == "sqlite-normal":
                    extra["note"] = (
                        "NOT the default durability: synchronous=NORMAL (a power "
                        "cut may lose the last commits)"
                    )
                await bench_backend(backend, url, opts, run.logs, {**run.common, **extra})


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


__all__ = ["BenchOptions", "build_yard", "k_steps", "noop", "run_bench", "three_steps", "yard"]
