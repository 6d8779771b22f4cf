"""The HTTP figures of ``runyard bench``: the engine behind a real ``runyard server``.

Per backend, on the benchmark's fresh database, after the engine figures: one
``python -m runyard server`` process on a free loopback port (``RUNYARD_API_KEY`` set to a
key made here) and worker processes serving the benchmark's workflows plus
``sleep_step``. The clients (:mod:`runyard_bench.http_clients`, one keep-alive connection
each) run in a process of their own, one per phase.

* ``http_async_triggers_per_s``: ``POST /v1/runs`` (async, ``noop``) from
  ``http_concurrency`` clients with one request in flight each; value = accepted (201)
  requests per second; also the end-to-end completion rate, read from the store;
* ``http_live_rtt_p50_ms`` / ``_p99_ms``: sequential live-mode ``POST /v1/runs`` of
  ``noop``, from sending the request to the 200 carrying the result;
* the MCP figures (tool round trips over HTTP and stdio, 100 concurrent calls):
  :mod:`runyard_bench.mcp_figures`;
* ``long_poll_wake_p50_ms`` / ``_p99_ms``: ``GET /v1/runs/{id}/result?timeout=30``
  opened while a ``sleep_step`` run sleeps; (answer received) - (the run's
  ``finished_at``), both on this machine's clock.

The server, the workers and the client process are stopped on the way out, Ctrl-C and
SIGTERM included.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from runyard import Runyard, keys

from .harness import BenchOptions, StoreCounter, WorkerProcs, emit, log, poll
from .http_clients import Client, check_status, run_clients
from .server import ServerProc
from .workflows import HTTP_YARD_TARGET

#: Targets of the issue, repeated in each figure's ``target``.
TARGET_TRIGGERS_PER_S = 2000.0
TARGET_LIVE_P50_MS_SQLITE = 5.0
TARGET_WAKE_MS = 5.0

#: How long the ``sleep_step`` run of a wake sample sleeps (the long-poll is open by then).
WAKE_SLEEP_MS = 50


# -- the benchmark process ------------------------------------------------------------------


async def _warm_up(server: ServerProc, workers: WorkerProcs) -> None:
    """Until both workflows are published and runs of them complete through the server."""
    deadline = time.perf_counter() + 60
    async with Client(server.base_url, server.api_key) as c:
        for workflow, value in (("noop", 0), ("sleep_step", 1)):
            while True:
                r = await c.post(
                    "/v1/runs",
                    {"workflow": workflow, "input": value, "mode": "live", "wait_timeout": 30},
                )
                if r.status_code == 200:
                    break
                server.check()
                workers.check()
                if r.status_code not in (404, 422) or time.perf_counter() > deadline:
                    check_status(r, 200, f"warm-up {workflow}")
                await asyncio.sleep(0.1)  # not published yet by the workers
        for _ in range(20):
            check_status(await c.post("/v1/runs", {"workflow": "noop", "input": 0}), 201, "warm-up")


async def async_triggers(
    spec: dict[str, Any],
    counter: StoreCounter,
    server: ServerProc,
    workers: WorkerProcs,
    opts: BenchOptions,
) -> dict[str, Any]:
    """The async phase in the client process, then the drain, read from the store."""
    # Whatever the warm-up left running ends first, so the drain counts these runs only.
    await poll(lambda: not counter.any_open("noop"), opts.timeout_s, "warm-up", workers)
    base_ok, base_bad = await asyncio.to_thread(counter.outcomes, "noop")
    a = await run_clients(
        {**spec, "phase": "async", "n": opts.http_runs, "concurrency": opts.http_concurrency},
        opts.timeout_s,
    )
    n, expected = a["n"], a["n"] + a["warmup_runs"]
    log(f"http async: {n} accepted in {a['accept_s']:.3f}s ({n / a['accept_s']:.0f}/s); draining")
    await poll(lambda: not counter.any_open("noop"), opts.timeout_s, "HTTP runs", workers)
    e2e_s = time.time() - a["t0_wall"]
    server.check()
    ok, bad = await asyncio.to_thread(counter.outcomes, "noop")
    if ok - base_ok != expected or bad != base_bad:
        raise RuntimeError(
            f"HTTP runs: {ok - base_ok} of {expected} SUCCEEDED, {bad - base_bad} not"
        )
    r = {**a, "accepted_per_s": n / a["accept_s"], "e2e_s": e2e_s, "e2e_per_s": n / e2e_s}
    log(
        f"http async: {r['accepted_per_s']:.0f} accepted/s, all SUCCEEDED after "
        f"{e2e_s:.3f}s ({r['e2e_per_s']:.0f}/s); CPU ms/request {a['cpu_ms_per_request']}, "
        f"cores busy {a['cpu_cores_busy']}"
    )
    return r


async def http_figures(
    label: str,
    url: str,
    opts: BenchOptions,
    logs: Path,
    base: dict[str, Any],
    y: Runyard,
) -> None:
    """Start a server and workers on ``url``, emit the HTTP figures, stop them again."""
    is_pg = not url.startswith("sqlite")
    env: dict[str, str] = {}
    if "sqlite_synchronous" in base:
        env["RUNYARD_SQLITE_SYNCHRONOUS"] = str(base["sqlite_synchronous"])
    api_key = keys.generate()
    server = ServerProc(url, api_key, env, logs / "server.log")
    workers: WorkerProcs | None = None
    counter: StoreCounter | None = None
    setup = {
        "workers": opts.workers,
        "concurrency": opts.concurrency,
        "server": "1 process: python -m runyard server (uvicorn)",
        "clients": "one keep-alive HTTP/1.1 connection each (aiohttp, uvloop), "
        "in a separate process",
    }
    jitter_ms = f"{opts.latency_jitter_s * 1000:.0f}"
    try:
        workers = WorkerProcs(url, opts.workers, opts.concurrency, env, logs, HTTP_YARD_TARGET)
        await server.start()
        log(
            f"{label}: HTTP server pid {server.pid} on {server.base_url}, "
            f"{opts.workers} worker process(es) {workers.pids} (logs: {logs})"
        )
        counter = StoreCounter(y)
        await _warm_up(server, workers)
        spec = {
            "base_url": server.base_url,
            "api_key": api_key,
            "server_pid": server.pid,
            "worker_pids": workers.pids,
            "postgres": is_pg,
        }
        if opts.http_runs > 0:
            a = await async_triggers(spec, counter, server, workers, opts)
            emit(
                {
                    "figure": "http_async_triggers_per_s",
                    **base,
                    "value": round(a["accepted_per_s"], 1),
                    "unit": "requests/s",
                    "n": a["n"],
                    "accept_s": round(a["accept_s"], 3),
                    "e2e_completed_per_s": round(a["e2e_per_s"], 1),
                    "e2e_s": round(a["e2e_s"], 3),
                    "request_p50_ms": round(a["request_p50_ms"], 3),
                    "request_p99_ms": round(a["request_p99_ms"], 3),
                    "in_flight": a["in_flight"],
                    **setup,
                    "cpu_ms_per_request": a["cpu_ms_per_request"],
                    "cpu_cores_busy": a["cpu_cores_busy"],
                    "target": f">= {TARGET_TRIGGERS_PER_S:.0f} requests/s",
                    "method": f"N POST /v1/runs (mode async, workflow noop) from "
                    f"{a['in_flight']} clients, one request in flight "
                    "each on its own keep-alive connection, in a client process of their "
                    "own, to a runyard server process on loopback while worker processes "
                    "execute the runs; value = N / (time from the first request until the "
                    "N-th answer, every answer 201); e2e_completed_per_s = N / (time from "
                    "the first request until the store shows none of them open, polled "
                    "every 20 ms, all then checked SUCCEEDED); CPU over the accept window "
                    "(postgres: every postgres process on the machine)",
                }
            )
        live: dict[str, float] | None = None
        if opts.http_live_runs > 0:
            r = await run_clients(
                {
                    **spec,
                    "phase": "live",
                    "n": opts.http_live_runs,
                    "warmup": opts.latency_warmup,
                    "jitter_s": opts.latency_jitter_s,
                },
                opts.timeout_s,
            )
            log(
                f"http live: p50={r['p50_ms']:.2f}ms p99={r['p99_ms']:.2f}ms "
                f"min={r['min_ms']:.2f} max={r['max_ms']:.2f}; medians {r['segments_p50_ms']}"
            )
            method = (
                f"{opts.latency_warmup} warm-ups, then {r['n']} sequential POST /v1/runs "
                "(mode live, workflow noop) from one client on one keep-alive "
                "connection, in a client process of its own; each timed from sending the "
                "request to receiving the 200 with the SUCCEEDED run and its result "
                f"(worker processes execute); a random 0-{jitter_ms} ms pause before each "
                "is not counted; segments_p50_ms: medians of the stretches between the "
                "send time, the run's created_at, started_at and finished_at (database clock, "
                "taken at each statement, before its commit) and the receive time, all "
                "time.time() on this machine"
            )
            live = {"p50": r["p50_ms"], "p99": r["p99_ms"]}
            extra = {k: round(r[k], 3) for k in ("mean_ms", "min_ms", "max_ms")}
            extra["segments_p50_ms"] = r["segments_p50_ms"]
            for p in ("p50", "p99"):
                target = {"target": f"<= {TARGET_LIVE_P50_MS_SQLITE:.0f} ms on SQLite"}
                emit(
                    {
                        "figure": f"http_live_rtt_{p}_ms",
                        **base,
                        "value": round(r[f"{p}_ms"], 3),
                        "unit": "ms",
                        "n": r["n"],
                        **extra,
                        **setup,
                        **(target if p == "p50" else {}),
                        "method": method,
                    }
                )
        if opts.mcp_runs > 0:
            from .mcp_figures import mcp_figures

            def check() -> None:
                server.check()
                if workers is not None:
                    workers.check()

            await mcp_figures(server.base_url, api_key, opts.mcp_runs, base, setup, live, check)
        if opts.http_wake_runs > 0:
            warm = 5
            r = await run_clients(
                {
                    **spec,
                    "phase": "wake",
                    "n": opts.http_wake_runs,
                    "warmup": warm,
                    "jitter_s": opts.latency_jitter_s,
                    "sleep_ms": WAKE_SLEEP_MS,
                },
                opts.timeout_s,
            )
            log(
                f"long-poll wake: p50={r['p50_ms']:.2f}ms p99={r['p99_ms']:.2f}ms "
                f"min={r['min_ms']:.2f} max={r['max_ms']:.2f}; the same GET on the finished "
                f"run: p50={r['finished_run_get_p50_ms']:.2f}ms; {r['late_opens']} sample(s) "
                "dropped (the run ended before the poll was sent)"
            )
            method = (
                f"{r['n']} samples after {warm} warm-ups, from one client in a "
                "client process of its own: POST /v1/runs (async) of sleep_step (one "
                f"ctx.step sleeping {WAKE_SLEEP_MS} ms), then at once GET "
                "/v1/runs/{id}/result?timeout=30 on the same connection; value = "
                "(time.time() when the 200 is received) - (the run's finished_at in it, "
                "taken by the database at the completing UPDATE, so the commit is "
                "included; same machine, same clock); samples whose run finished before "
                f"the GET was sent are dropped (late_opens); a random 0-{jitter_ms} ms "
                "pause before each is not counted; finished_run_get_p50_ms: the same GET "
                "sent again once the run is over (a round trip without a wait), for scale"
            )
            extra = {k: round(r[k], 3) for k in ("mean_ms", "min_ms", "max_ms")}
            for p in ("p50", "p99"):
                emit(
                    {
                        "figure": f"long_poll_wake_{p}_ms",
                        **base,
                        "value": round(r[f"{p}_ms"], 3),
                        "unit": "ms",
                        "n": r["n"],
                        **extra,
                        "late_opens": r["late_opens"],
                        "finished_run_get_p50_ms": round(r["finished_run_get_p50_ms"], 3),
                        **setup,
                        "target": f"<= {TARGET_WAKE_MS:.0f} ms after the run finishes",
                        "method": method,
                    }
                )
    finally:
        code = server.stop()
        codes = workers.stop() if workers is not None else []
        if counter is not None:
            counter.close()
        log(f"{label}: HTTP server stopped (exit code {code}), its workers too ({codes})")


__all__ = ["http_figures"]
