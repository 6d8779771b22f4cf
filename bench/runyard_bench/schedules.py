"""The schedule figures of ``runyard bench --schedules`` (issue 20), one JSON line each.

Method, per backend, on a fresh database:

* one scheduler process (``python -m runyard_bench.schedules URL``: the
  :class:`~runyard.service.scheduler.Scheduler` loop alone, over a Runyard defining the
  bench workflows, as every worker runs it) fires the schedules; no worker executes the
  runs (they stay QUEUED), so its CPU is the scheduler's alone;
* the schedules are created in this process through the service (``create_schedule``),
  overlap ``allow_all`` (a fire never waits for the previous run), no jitter;
* the fire lag of a fire is the time from its fire time to its run's ``created_at`` (the
  run is written QUEUED), both read from the database: the run id carries the fire time
  (``<schedule id>@<fire time in ms>``, ``runyard.service.schedules.fire_run_id``);
* ``schedule_fire_lag_1_p50_ms``/``_p99_ms``: one schedule firing every second
  (``* * * * * *``), for ``--schedule-fires`` fires after a 3 s warm-up;
* ``schedule_fire_lag_10000_p50_ms``/``_p99_ms``: ``--schedules-many`` (10,000) schedules
  each firing once a minute, spread over the minute by a seconds field (schedule *i*
  fires at second *i* mod 60: ``S * * * * *``), so about 167 fires a second, measured over
  one whole minute after a 5 s warm-up (every schedule fires once in it);
* ``scheduler_cpu_ms_per_1000_fires``: the scheduler process's CPU (user + system,
  ``/proc``) over that minute, per 1,000 fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runyard import Runyard
from runyard.service import ScheduleSpec

from .harness import BenchOptions, emit, fresh_database, log, session, sqlite_durability
from .measure import percentile, proc_cpu_s
from .workflows import build_yard

#: Seconds a window waits after its last fire time for runs still being written.
SETTLE_S = 3.0


class SchedulerProc:
    """``python -m runyard_bench.schedules URL``: the scheduler loop alone."""

    def __init__(self, url: str, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runyard_bench.schedules", url],
                env={**os.environ, "RUNYARD_DATABASE_URL": url},
                stdout=subprocess.PIPE,
                stderr=out,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(b"ready"):
            raise RuntimeError(f"scheduler process: {line!r}; log {log_path}")

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _lags(y: Runyard, since: float, until: float) -> list[float]:
    """Lags (s) of the fires with a fire time in ``[since, until)``."""
    store = y.store
    conn = store.connect()
    sql = "SELECT id, created_at FROM runs WHERE schedule_id IS NOT NULL"
    try:
        with store.transaction(conn, write=False) as tx:
            tx.cursor.execute(sql, ())
            rows = tx.cursor.fetchall()
    finally:
        store.close_connection(conn)
    out: list[float] = []
    for row in rows:
        fire_at = int(str(row["id"]).rsplit("@", 1)[1]) / 1000
        if since <= fire_at < until:
            out.append(float(row["created_at"]) - fire_at)
    return out


async def _create(y: Runyard, crons: list[str], in_flight: int = 64) -> None:
    sem = asyncio.Semaphore(in_flight)

    async def one(i: int, cron: str) -> None:
        async with sem:
            spec = ScheduleSpec(
                cron=cron, workflow="noop", input=i, overlap="allow_all", catchup_window=60
            )
            await y.create_schedule(spec, schedule_id=f"s{i:05d}")

    await asyncio.gather(*(one(i, c) for i, c in enumerate(crons)))


def _figures(
    name: str, lags: list[float], base: dict[str, Any], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    if not lags:
        log(f"{name}: no fire in the measured window (see the scheduler's log)")
        return []
    out = []
    for p in (50, 99):
        out.append(
            {
                "figure": f"{name}_p{p}_ms",
                **base,
                "value": round(1000 * percentile(lags, p), 2),
                "unit": "ms",
                "n": len(lags),
                **extra,
            }
        )
    return out


async def _backend(
    backend: str,
    opts: BenchOptions,
    tmp: Path,
    common: dict[str, Any],
    fires_1: int,
    many: int,
) -> None:
    sqlite_durability(backend)
    with fresh_database(backend, opts, tmp) as url:
        y = build_yard(url)
        await asyncio.to_thread(y.migrate)
        base = {"backend": backend, **common}
        sched = SchedulerProc(url, tmp / "logs" / backend / "scheduler.log")
        try:
            if fires_1:
                await _create(y, ["* * * * * *"])
                t0 = time.time() + 3
                t1 = t0 + fires_1
                await asyncio.sleep(t1 - time.time() + SETTLE_S)
                lags = _lags(y, t0, t1)
                method = "one schedule, cron '* * * * * *'; lag = run created_at - fire time"
                for line in _figures("schedule_fire_lag_1", lags, base, {"method": method}):
                    emit(line)
                await y.delete_schedule("s00000")
            if many:
                started = time.time()
                await _create(y, [f"{i % 60} * * * * *" for i in range(many)])
                log(f"{backend}: {many} schedules created in {time.time() - started:.1f} s")
                t0 = time.time() + 5
                await asyncio.sleep(t0 - time.time())
                cpu0 = sched.cpu_s()
                t1 = t0 + 60
                await asyncio.sleep(t1 - time.time())
                cpu1 = sched.cpu_s()
                await asyncio.sleep(SETTLE_S)
                lags = _lags(y, t0, t1)
                method = (
                    f"{many} schedules, schedule i on cron 'i%60 * * * * *' (each fires once a "
                    "minute, spread over it); one minute measured; lag = run created_at - fire "
                    "time; one scheduler process, runs left QUEUED"
                )
                for line in _figures(f"schedule_fire_lag_{many}", lags, base, {"method": method}):
                    emit(line)
                if cpu0 is not None and cpu1 is not None and lags:
                    emit(
                        {
                            "figure": "scheduler_cpu_ms_per_1000_fires",
                            **base,
                            "value": round(1000 * (cpu1 - cpu0) / len(lags) * 1000, 1),
                            "unit": "ms CPU / 1,000 fires",
                            "n": len(lags),
                            "method": "user + system CPU of the scheduler process over the "
                            f"measured minute of the {many}-schedule figure, per 1,000 fires",
                        }
                    )
        finally:
            sched.stop()
            y.close()


async def run_schedules(opts: BenchOptions, fires_1: int = 30, many: int = 10_000) -> None:
    """The schedule figures for each backend of ``opts`` (see the module)."""
    async with session(opts, "runyard-bench-schedules-") as s:
        for backend in opts.backends:
            await _backend(backend, opts, s.tmp, s.common, fires_1, many)


async def _serve(url: str) -> None:
    from runyard.service.scheduler import Scheduler

    y = build_yard(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(Scheduler(y).run(stop))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await stop.wait()
    await task
    y.close()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
