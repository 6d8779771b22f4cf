"""The engine figures of ``runyard bench``, one JSON line each on stdout.

Measured like the peers in ``shared/peers-bench`` (README.md there): a producer process
(this one) triggers runs with ``yard.start`` while worker processes started beforehand
(``python -m runyard worker runyard_bench.workflows:yard``) execute them; completion is
read from the store (throughput) or awaited with the engine's own wait API (latency).

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
  run (producer + worker, counted in one process with an in-process worker:
  :mod:`runyard_bench.counting`);
* the HTTP figures through a ``runyard server`` process: :mod:`runyard_bench.http_figures`.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from runyard import Runyard

from .counting import sql_counts
from .harness import (
    BenchOptions,
    CpuMeter,
    StoreCounter,
    WorkerProcs,
    emit,
    fresh_database,
    log,
    poll,
    run_one,
    session,
    sqlite_durability,
    start_many,
)
from .measure import percentile
from .workflows import build_yard


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
        return started.is_set() and not counter.any_open(workflow)

    t0 = time.perf_counter()
    enq = asyncio.create_task(all_started())
    try:
        t_done = await poll(done, opts.timeout_s, f"{n} {workflow} runs", workers)
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


async def latency(y: Runyard, opts: BenchOptions) -> dict[str, Any]:
    rnd = random.Random(12345)
    for _ in range(opts.latency_warmup):
        await run_one(y, "noop", 0)
    lat: list[float] = []
    for _ in range(opts.latency_runs):
        if opts.latency_jitter_s > 0:
            await asyncio.sleep(rnd.uniform(0, opts.latency_jitter_s))
        t = time.perf_counter()
        await run_one(y, "noop", 0)
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
        await run_one(y, "k_steps", 0)
        await run_one(y, "k_steps", k)
    t0s: list[float] = []
    tks: list[float] = []
    for _ in range(opts.step_runs):
        t = time.perf_counter()
        await run_one(y, "k_steps", 0)
        t0s.append((time.perf_counter() - t) * 1000.0)
        t = time.perf_counter()
        await run_one(y, "k_steps", k)
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
        await poll(
            lambda: counter.live_workers() >= opts.workers,
            60,
            "workers to register",
            workers,
            interval=0.05,
        )
        # Warm-up: both workflows through the workers, and the producer's connections.
        await asyncio.gather(*(run_one(y, "noop", i) for i in range(20)))
        await asyncio.gather(*(run_one(y, "three_steps", i) for i in range(20)))

        method_tp = (
            "N runs started by one producer process with yard.start() "
            f"({opts.start_concurrency} start() calls in flight, each one run in its own "
            "start() call), executed by separate worker processes; value = N / (time from "
            "the first start() until the store shows none of them still open, polled every "
            "20 ms; then all N are checked to have SUCCEEDED)"
        )
        phases = (
            ("noop_runs_per_s", "noop", opts.runs, "runs/s", method_tp),
            (
                "three_step_workflows_per_s",
                "three_steps",
                opts.wf3_runs,
                "workflows/s",
                method_tp.replace("N runs", "N runs of 3 sequential no-op ctx.step() calls"),
            ),
        )
        for figure, workflow, count, unit, method in phases:
            if count <= 0:
                continue
            r = await throughput(y, counter, workflow, count, opts, workers, is_pg)
            emit(
                {
                    "figure": figure,
                    **base,
                    "value": round(r["e2e_per_s"], 1),
                    "unit": unit,
                    "n": r["n"],
                    "e2e_s": round(r["e2e_s"], 3),
                    "enqueue_per_s": round(r["enqueue_per_s"], 1),
                    "start_concurrency": opts.start_concurrency,
                    **setup,
                    "cpu_ms_per_run": r["cpu_ms_per_run"],
                    "method": method,
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
            from .http_figures import http_figures  # (aiohttp: only for these figures)

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


__all__ = ["bench_backend", "latency", "run_bench", "step_cost", "throughput"]
