"""HTTP-target runs per second against a loopback server (issue 21), one JSON line per
backend: ``runyard bench --http-targets [--backend ...] [--http-target-runs N]
[--workers W]`` (each worker ``--concurrency 32``), or on its own
``python -m runyard_bench.http_targets [--backend sqlite|postgres] [--runs N]
[--workers W] [--concurrency C]``.

Method, on a fresh database of the backend: an aiohttp target server in this process on
127.0.0.1 answers every request ``200 {"ok": true}`` at once; ``W`` ``runyard worker``
processes (``--concurrency C``, ``RUNYARD_OUTBOUND_ALLOW=127.0.0.0/8``) serve the built-in
``http`` workflow; once they have published it, this process starts ``N`` HTTP-target
runs (``POST`` with a small JSON body) through ``Runyard.start`` (32 calls in flight) and
measures from the first start until every run's result (its 200) is in.
``http_target_runs_per_s`` = N / that time; the target's hit count is checked to equal N.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from runyard import Runyard

from .harness import (
    BenchOptions,
    WorkerProcs,
    emit,
    fresh_database,
    log,
    session,
    sqlite_durability,
)

ALLOW = {"RUNYARD_OUTBOUND_ALLOW": "127.0.0.0/8"}


async def _target() -> tuple[web.AppRunner, str, list[int]]:
    hits = [0]

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        hits[0] += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", hits


async def run_http_targets(opts: BenchOptions, runs: int, concurrency: int = 32) -> None:
    """``http_target_runs_per_s`` for each backend of ``opts`` (``opts.workers`` worker
    processes of ``concurrency``), each on a fresh database."""
    async with session(opts, "runyard-bench-http-targets-") as s:
        for backend in opts.backends:
            sqlite_durability(backend)
            log(f"http targets: {runs} runs on {backend}")
            line = await measure(backend, runs, opts.workers, concurrency, opts, s.tmp)
            emit({**s.common, **line})


async def measure(
    backend: str,
    runs: int,
    workers: int,
    concurrency: int,
    opts: BenchOptions | None = None,
    tmp: Path | None = None,
) -> dict[str, Any]:
    os.environ.update(ALLOW)  # this process checks each URL at create time
    opts = opts or BenchOptions(backends=[backend])
    tmp = tmp or Path(tempfile.mkdtemp(prefix="runyard-bench-http-"))
    runner, base, hits = await _target()
    try:
        with fresh_database(backend, opts, tmp) as url:
            y = Runyard(url)
            y.migrate()
            procs = WorkerProcs(url, workers, concurrency, ALLOW, tmp / "logs" / backend)
            try:

                async def published() -> bool:
                    return await y.service.run_defaults("http") is not None

                deadline = time.monotonic() + 60
                while not await published():
                    procs.check()
                    if time.monotonic() > deadline:
                        raise TimeoutError("the workers did not publish the http workflow")
                    await asyncio.sleep(0.1)
                handles: list[Any] = []
                nxt = 0

                async def starter() -> None:
                    nonlocal nxt
                    while nxt < runs:
                        i = nxt
                        nxt += 1
                        target = {"url": f"{base}/r/{i}", "body": {"i": i}}
                        handles.append(await y.start("http", target))

                t0 = time.perf_counter()
                await asyncio.gather(*(starter() for _ in range(32)))
                started_s = time.perf_counter() - t0

                results = await asyncio.gather(*(h.result(timeout=600) for h in handles))
                t1 = time.perf_counter()
                assert all(r["status"] == 200 for r in results), "a run did not get its 200"
            finally:
                procs.stop()
                await y.aclose()
    finally:
        await runner.cleanup()
    elapsed = t1 - t0
    return {
        "figure": "http_target_runs_per_s",
        "backend": backend,
        "value": round(runs / elapsed, 1),
        "runs": runs,
        "workers": workers,
        "concurrency": concurrency,
        "start_s": round(started_s, 3),
        "elapsed_s": round(elapsed, 3),
        "target_hits": hits[0],
        "host_cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    log(f"http targets: {args.runs} runs on {args.backend}")
    emit(asyncio.run(measure(args.backend, args.runs, args.workers, args.concurrency)))


if __name__ == "__main__":
    main()
