"""``runyard bench --scale``: how the engine holds up with a big backlog and a long history.

Per backend, each group of figures on a fresh database of its own (one JSON line per
figure on stdout, as the engine figures; progress on stderr):

* ``drain_per_s`` (``backlog``, ``sleeping``): a backlog of no-op runs filled through
  ``yard.start`` while no worker runs (for the big one after ``sleeping`` runs of
  ``sleeper`` reached their hour-long durable sleep, with workers that are then stopped);
  then worker processes start, and value = backlog / (the last backlog run's
  ``finished_at`` - the last worker's ``started_at``, both on the database clock). Past
  ``drain_timeout_s`` the rate over what drained is reported with ``complete: false``.
  The small backlog is drained ``small_drains`` times (3; each on a fresh database; half
  before the big backlog's drain, the rest after) and its line is the median's, with
  every value under ``samples``; the big one's line has ``ratio_to_small``, its rate
  over that median. Each line has ``cpu_ms_per_run``: the CPU the worker processes and
  (PostgreSQL) the database server's processes used per run drained;
* ``noop_runs_per_s`` (``history``): the no-op throughput phase of the engine figures on
  a fresh database (``history`` 0), then on the same one once it got ``history`` finished
  no-op runs by :func:`~runyard_bench.clone.clone_runs` (with the ``ratio`` of the two);
* ``bytes_per_run``: the database's growth over that fill per run added, with a
  ``breakdown`` per table and index (PostgreSQL; SQLite's ``dbstat`` where compiled in);
* ``list_runs_p50_ms`` / ``_p99_ms`` (``filter``): ``GET /v1/runs?...&limit=50`` through a
  ``runyard server`` process on that database, sequential, after warm-ups;
* ``claim_p99_ms`` and ``claim_p99_ms_during_purge``: the worker's claim transaction
  (``store.claim_txn`` through the ``DbExecutor``, 16 items a claim) over a backlog, with
  ``purge_runs`` runs past the retention cutoff in the database; once alone, once while a
  process of its own purges them (``store.purge_txn`` in a loop, as retention does).

The bulk fill and the size readings are in :mod:`runyard_bench.clone`, the purging
process in :mod:`runyard_bench.purge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runyard import ItemState, Runyard, keys
from runyard.store.dbexec import LockBusy

from .clone import (
    CloneReport,
    ScaleCounter,
    _breakdown,
    clone_runs,
    database_bytes,
    relation_bytes,
)
from .harness import (
    BenchOptions,
    WorkerProcs,
    emit,
    log,
    pg_database,
    poll,
    run_one,
    session,
    sqlite_durability,
    start_many,
)
from .measure import percentile
from .purge import PurgeProc
from .server import ServerProc
from .throughput import throughput
from .workflows import build_yard

DAY_S = 86400.0


@dataclass
class ScaleOptions:
    history_runs: int = 1_000_000
    backlog_small: int = 5_000
    backlog_big: int = 100_000
    sleepers: int = 10_000
    purge_runs: int = 500_000
    claim_backlog: int = 20_000
    claim_limit: int = 16
    purge_batch: int = 0  # 0: the backend's (store.purge_batch), as retention's
    template_runs: int = 4
    clone_batch: int = 50_000
    drain_timeout_s: float = 900.0
    #: Drains of the small backlog, each on a fresh database (value: their median). The
    #: small drain lasts about a second from the workers' cold start, and one such
    #: second varied by half on this 2-core machine; the big one lasts half a minute.
    small_drains: int = 3
    list_requests: int = 200
    list_warmup: int = 20
    analyze: bool = True
    retention_days: float = 30.0


async def template_runs(y: Runyard, n: int, workflows: Sequence[str] = ("noop",)) -> list[str]:
    """``n`` real runs (of ``workflows``, round robin) executed to their end by an
    in-process worker."""
    w = y.worker(concurrency=max(1, n), shutdown_timeout_s=5)
    task = asyncio.create_task(w.run())
    try:
        handles = [await y.start(workflows[i % len(workflows)], i) for i in range(n)]
        for h in handles:
            await h.result(timeout=60)
    finally:
        w.stop()
        await asyncio.wait_for(task, 60)
    runs = [await y.get_run(h.id) for h in handles]
    bad = [r.id for r in runs if r.status != "SUCCEEDED"]
    if bad:
        raise RuntimeError(f"template runs did not succeed: {bad}")
    return [h.id for h in handles]


# -- databases ---------------------------------------------------------------------------


@contextlib.contextmanager
def scale_database(backend: str, opts: BenchOptions, tmp: Path, group: str) -> Iterator[str]:
    """A new, empty database for one group of figures (removed afterwards)."""
    if opts.database_url:
        yield opts.database_url
        return
    if backend.startswith("sqlite"):
        folder = tmp / f"{backend}-{group}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            yield f"sqlite:///{folder / 'bench.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    with pg_database(opts.pg_admin_url, f"runyard_bench_{os.getpid()}_{group}") as url:
        yield url


def _worker_env(base: dict[str, Any]) -> dict[str, str]:
    sync = base.get("sqlite_synchronous")
    return {} if sync is None else {"RUNYARD_SQLITE_SYNCHRONOUS": str(sync)}


def _cpu_s(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds (user + system) each live process of ``pids`` has used so far."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # (gone, or not on this machine)
        out[pid] = (int(fields[11]) + int(fields[12])) / hz
    return out


class DrainCpu:
    """CPU used during a drain by the worker processes and by the database server's
    processes serving them (PostgreSQL on this machine; SQLite works inside the workers):
    a cost per run that the machine's drifting speed moves less than a rate."""

    def __init__(self, counter: ScaleCounter, workers: WorkerProcs) -> None:
        self.counter, self.workers = counter, workers
        self.workers0 = _cpu_s(workers.pids)
        self.server0 = _cpu_s(counter.server_pids())

    def per_run_ms(self, runs: int) -> dict[str, float | None]:
        """Milliseconds of CPU per run since this was made (call before the workers stop)."""
        w1 = _cpu_s(self.workers.pids)
        s1 = _cpu_s(self.counter.server_pids())
        workers = sum(v - self.workers0.get(p, 0.0) for p, v in w1.items())
        server = sum(v - self.server0.get(p, 0.0) for p, v in s1.items()) if s1 else None
        n = max(1, runs)
        return {
            "workers": round(workers * 1000 / n, 4),
            "database_server": None if server is None else round(server * 1000 / n, 4),
            "total": round((workers + (server or 0.0)) * 1000 / n, 4),
        }


async def _await_workers(counter: ScaleCounter, workers: WorkerProcs, n: int) -> float | None:
    """Until the ``n`` processes registered; the last one's ``started_at`` (db clock)."""
    up: float | None = None

    def ready() -> bool:
        nonlocal up
        count, up = counter.workers_up(workers.pids)
        return count >= n

    await poll(ready, 60, "workers to register", workers, interval=0.01)
    return up


# -- drain -------------------------------------------------------------------------------


async def drain_phase(
    url: str,
    opts: BenchOptions,
    scale: ScaleOptions,
    logs: Path,
    base: dict[str, Any],
    backlog: int,
    sleepers: int,
) -> dict[str, Any]:
    """Drain a backlog of ``backlog`` (after ``sleepers`` asleep); its figure's line."""
    y = build_yard(url)
    await asyncio.to_thread(y.migrate)
    counter = ScaleCounter(y)
    env = _worker_env(base)
    label = f"drain {backlog}+{sleepers}"
    try:
        if sleepers > 0:
            workers = WorkerProcs(url, opts.workers, opts.concurrency, env, logs / "sleepers")
            try:
                await _await_workers(counter, workers, opts.workers)
                took = await start_many(y, "sleeper", sleepers, opts.start_concurrency)
                log(f"{label}: started {sleepers} sleepers in {took:.1f}s")
                t = time.perf_counter()
                await poll(
                    lambda: counter.asleep("sleeper") >= sleepers,
                    opts.timeout_s,
                    f"{sleepers} sleepers asleep",
                    workers,
                    interval=0.25,
                )
                log(f"{label}: all {sleepers} asleep {time.perf_counter() - t:.1f}s later")
            finally:
                codes = workers.stop()
                log(f"{label}: sleepers' workers stopped ({codes})")
        filled_from = await asyncio.to_thread(counter.now)
        took = await start_many(y, "noop", backlog, opts.start_concurrency)
        log(
            f"{label}: backlog of {backlog} no-op runs filled through yard.start in "
            f"{took:.1f}s ({backlog / took:.0f}/s; {took * 100_000 / backlog:.1f}s per 100,000)"
        )
        base_ok = await asyncio.to_thread(counter.succeeded, "noop")
        workers = WorkerProcs(url, opts.workers, opts.concurrency, env, logs / f"drain-{backlog}")
        complete = True
        cpu: dict[str, float | None] = {}
        try:
            up_at = await _await_workers(counter, workers, opts.workers)
            t_up = time.perf_counter()
            used = DrainCpu(counter, workers)
            try:
                await poll(
                    lambda: not counter.any_open("noop"),
                    scale.drain_timeout_s,
                    f"a backlog of {backlog}",
                    workers,
                    interval=2.0,  # (the end is read from the database clock)
                )
            except TimeoutError:
                complete = False
            t_end = time.perf_counter()
            drained = await asyncio.to_thread(counter.succeeded, "noop") - base_ok
            cpu = await asyncio.to_thread(used.per_run_ms, drained)
        finally:
            codes = workers.stop()
            log(f"{label}: workers stopped ({codes})")
        ok = await asyncio.to_thread(counter.succeeded, "noop") - base_ok
        last = await asyncio.to_thread(counter.last_finished, "noop", filled_from)
        if ok != backlog and complete:
            raise RuntimeError(f"{label}: {ok} of {backlog} backlog runs SUCCEEDED")
        wall = t_end - t_up
        if complete and up_at is not None and last is not None and last > up_at:
            value, clock = backlog / (last - up_at), "database"
        else:
            value, clock = ok / wall, "wall"
        log(f"{label}: {ok} drained, {value:.0f}/s ({clock} clock; wall {ok / wall:.0f}/s)")
        line: dict[str, Any] = {
            "figure": "drain_per_s",
            **base,
            "value": round(value, 1),
            "unit": "runs/s",
            "backlog": backlog,
            "sleeping": sleepers,
            "drained": ok,
            "complete": complete,
            "wall_per_s": round(ok / wall, 1),
            "cpu_ms_per_run": cpu,
            "fill_s": round(took, 3),
            "fill_per_s": round(backlog / took, 1),
            "workers": opts.workers,
            "concurrency": opts.concurrency,
            "method": f"{sleepers} runs of sleeper (await ctx.sleep('nap', 3600)) started "
            "with workers running and waited for until all were asleep (RUNNING, "
            "waiting_for sleep:nap), workers stopped; then a backlog of no-op runs started "
            f"through yard.start ({opts.start_concurrency} in flight) with no worker running; "
            f"then {opts.workers} worker processes started (cold); value = backlog / (the "
            "last backlog run's finished_at - the last worker's started_at, database clock), "
            "or, when not complete within "
            f"{scale.drain_timeout_s:.0f}s, runs drained / wall time since the workers "
            "registered; cpu_ms_per_run: user + system CPU from /proc of the worker "
            "processes and (PostgreSQL) of the server processes of the database's sessions, "
            "from the workers' registration to the end, per run drained",
        }
        return line
    finally:
        counter.close()
        await y.aclose()


# -- history -----------------------------------------------------------------------------


async def history_phase(
    url: str, opts: BenchOptions, scale: ScaleOptions, logs: Path, base: dict[str, Any]
) -> CloneReport:
    """Fill ``history_runs`` finished runs, then: bytes per run, no-op runs/s, list p50."""
    is_pg = not url.startswith("sqlite")
    y = build_yard(url)
    await asyncio.to_thread(y.migrate)
    counter = ScaleCounter(y)
    n = scale.history_runs
    try:
        templates = await template_runs(y, scale.template_runs)
        env = _worker_env(base)
        empty = None
        if opts.runs > 0:  # the same figure on this database before its history
            empty = await _noop_rate(y, counter, opts, url, env, logs / "empty", is_pg)
            emit({"figure": "noop_runs_per_s", **base, "history": 0, **empty})
        size0 = await asyncio.to_thread(database_bytes, url)
        rel0 = await asyncio.to_thread(relation_bytes, url)
        now = await asyncio.to_thread(counter.now)
        # Spread over the retention period, ending a minute ago: none is old enough for
        # the workers' purge during the throughput phase.
        rep = await asyncio.to_thread(
            clone_runs,
            url,
            templates,
            n,
            oldest=now - scale.retention_days * DAY_S + 3600,
            newest=now - 60,
            batch=scale.clone_batch,
            analyze=scale.analyze,
        )
        log(
            f"history: {n} runs cloned from {len(templates)} real ones in {rep.seconds:.1f}s "
            f"({rep.per_100k_s:.1f}s per 100,000 runs, ANALYZE {rep.analyze_s:.1f}s of it); "
            f"rows added {rep.rows}"
        )
        size1 = await asyncio.to_thread(database_bytes, url)
        rel1 = await asyncio.to_thread(relation_bytes, url)
        emit(
            {
                "figure": "bytes_per_run",
                **base,
                "value": round((size1 - size0) / n, 1),
                "unit": "bytes/run",
                "history": n,
                "database_bytes_before": size0,
                "database_bytes_after": size1,
                "rows_per_run": {k: round(v / n, 3) for k, v in rep.rows.items()},
                "fill_s": round(rep.seconds, 3),
                "fill_s_per_100k": round(rep.per_100k_s, 2),
                "analyzed": scale.analyze if is_pg else False,
                "breakdown": _breakdown(rel0, rel1, n),
                "method": "finished no-op runs cloned (every row they own) from "
                f"{len(templates)} real ones; value = (database size after - before) / runs "
                "added; "
                + (
                    "pg_database_size; breakdown per relation: pg_relation_size (tables: "
                    "main fork; total_bytes_per_run: pg_total_relation_size, with indexes "
                    "and TOAST), no VACUUM (no visibility map)"
                    if is_pg
                    else "SQLite: database file + WAL after wal_checkpoint(TRUNCATE); "
                    "breakdown from dbstat (pages per table and index)"
                ),
            }
        )
        history = {"history": n, "analyzed": scale.analyze if is_pg else False}
        if empty is not None:
            full = await _noop_rate(y, counter, opts, url, env, logs / "history", is_pg)
            full["method"] += (
                f" on a database holding {n} finished no-op runs (bulk-cloned from real ones, "
                f"created over the last {scale.retention_days:g} days)"
                + ("" if not is_pg else ", ANALYZEd" if scale.analyze else ", NOT analyzed")
            )
            ratio = round(full["value"] / empty["value"], 3) if empty["value"] else None
            emit({"figure": "noop_runs_per_s", **base, **history, **full, "ratio": ratio})
        if scale.list_requests > 0:
            await list_phase(url, scale, logs, base, history)
        return rep
    finally:
        counter.close()
        await y.aclose()


async def _noop_rate(
    y: Runyard,
    counter: ScaleCounter,
    opts: BenchOptions,
    url: str,
    env: dict[str, str],
    logs: Path,
    is_pg: bool,
) -> dict[str, Any]:
    """The noop_runs_per_s phase of runyard bench on ``url``, with worker processes of
    its own: the fields of its line."""
    workers = WorkerProcs(url, opts.workers, opts.concurrency, env, logs)
    try:
        await _await_workers(counter, workers, opts.workers)
        await asyncio.gather(*(run_one(y, "noop", i) for i in range(20)))  # warm-up
        r = await throughput(y, counter, "noop", opts.runs, opts, workers, is_pg)
    finally:
        log(f"noop: workers stopped ({workers.stop()})")
    return {
        "value": round(r["e2e_per_s"], 1),
        "unit": "runs/s",
        "n": r["n"],
        "e2e_s": round(r["e2e_s"], 3),
        "enqueue_per_s": round(r["enqueue_per_s"], 1),
        "start_concurrency": opts.start_concurrency,
        "workers": opts.workers,
        "concurrency": opts.concurrency,
        "cpu_ms_per_run": r["cpu_ms_per_run"],
        "method": "the noop_runs_per_s phase of runyard bench",
    }


LIST_FILTERS: list[tuple[str, dict[str, str]]] = [
    ("status=SUCCEEDED", {"status": "SUCCEEDED"}),
    ("workflow=noop", {"workflow": "noop"}),
    ("workflow=noop&status=SUCCEEDED", {"workflow": "noop", "status": "SUCCEEDED"}),
]


async def list_phase(
    url: str, scale: ScaleOptions, logs: Path, base: dict[str, Any], extra: dict[str, Any]
) -> None:
    import httpx

    api_key = keys.generate()
    server = ServerProc(url, api_key, _worker_env(base), logs / "server.log")
    try:
        await server.start()
        log(f"list: server pid {server.pid} on {server.base_url}")
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"x-api-key": api_key}, timeout=60.0
        ) as c:
            for label, params in LIST_FILTERS:
                lat: list[float] = []
                for k in range(scale.list_warmup + scale.list_requests):
                    t = time.perf_counter()
                    r = await c.get("/v1/runs", params={**params, "limit": 50})
                    dt = (time.perf_counter() - t) * 1000.0
                    if r.status_code != 200:
                        raise RuntimeError(f"GET /v1/runs?{label}: HTTP {r.status_code} {r.text}")
                    if len(r.json()["items"]) != 50:
                        raise RuntimeError(f"GET /v1/runs?{label}: fewer than 50 runs")
                    if k >= scale.list_warmup:
                        lat.append(dt)
                p50, p99 = percentile(lat, 50), percentile(lat, 99)
                log(f"list {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
                for p, v in (("p50", p50), ("p99", p99)):
                    emit(
                        {
                            "figure": f"list_runs_{p}_ms",
                            **base,
                            **extra,
                            "filter": label,
                            "value": round(v, 3),
                            "unit": "ms",
                            "n": len(lat),
                            "max_ms": round(max(lat), 3),
                            "method": f"{scale.list_warmup} warm-ups, then {len(lat)} "
                            f"sequential GET /v1/runs?{label}&limit=50 (newest first) from "
                            "one httpx client on one keep-alive connection to a runyard "
                            "server process on loopback; each from sending the request to "
                            "the 200 with 50 runs read",
                        }
                    )
    finally:
        code = server.stop()
        log(f"list: server stopped ({code})")


# -- claims during a purge ---------------------------------------------------------------


async def _claim_loop(y: Runyard, scale: ScaleOptions, n_items: int) -> dict[str, Any]:
    """Claim ``claim_limit`` items at a time as the worker does and complete them, until
    ``n_items`` were; the latency of each claim (LockBusy retries included)."""
    from runyard.worker.worker import SCAN_INTERVAL_S, new_worker_id

    store, db = y.store, y.db
    owner = new_worker_id()
    wrefs = sorted(wf.ref for wf in y.workflows.values())
    lat: list[float] = []
    busy_total = 0
    done = 0
    scanned_at = 0.0
    result = "1"
    while done < n_items:
        busy = 0
        t = time.perf_counter()
        scan = t - scanned_at >= SCAN_INTERVAL_S
        if scan:
            scanned_at = t
        while True:
            try:
                claimed = await db.write(
                    store.claim_txn,
                    owner,
                    wrefs,
                    scale.claim_limit,
                    30.0,
                    scan,
                    [],
                    durable=False,
                    busy_fails=busy < 3,
                )
                break
            except LockBusy:
                busy += 1
                await asyncio.sleep(0.0005 * busy)
        lat.append((time.perf_counter() - t) * 1000.0)
        busy_total += busy
        if not claimed:
            raise RuntimeError(f"claim: nothing to claim after {done} of {n_items} items")
        await asyncio.gather(
            *(
                db.write(
                    store.complete_item_txn,
                    c.fence,
                    c.iteration,
                    [],
                    ItemState.COMPLETED,
                    result,
                    None,
                    c.run_items == 1,
                    order=c.fence.run_id,
                )
                for c in claimed
            )
        )
        done += len(claimed)
    return {
        "n": len(lat),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat),
        "lock_busy_retries": busy_total,
    }


async def claim_phase(
    url: str, opts: BenchOptions, scale: ScaleOptions, base: dict[str, Any]
) -> None:
    y = build_yard(url)
    await asyncio.to_thread(y.migrate)
    counter = ScaleCounter(y)
    try:
        templates = await template_runs(y, scale.template_runs)
        now = await asyncio.to_thread(counter.now)
        cutoff = now - scale.retention_days * DAY_S
        if scale.purge_runs > 0:
            rep = await asyncio.to_thread(
                clone_runs,
                url,
                templates,
                scale.purge_runs,
                oldest=cutoff - scale.retention_days * DAY_S,
                newest=cutoff - DAY_S,
                batch=scale.clone_batch,
                analyze=scale.analyze,
            )
            log(
                f"claims: {scale.purge_runs} runs older than the retention cutoff cloned in "
                f"{rep.seconds:.1f}s ({rep.per_100k_s:.1f}s per 100,000)"
            )
        results: dict[str, dict[str, Any]] = {}
        for label in ("alone", "during_purge"):
            took = await start_many(y, "noop", scale.claim_backlog, opts.start_concurrency)
            log(f"claims: backlog of {scale.claim_backlog} filled in {took:.1f}s")
            purge: PurgeProc | None = None
            if label == "during_purge":
                if scale.purge_runs <= 0:
                    break
                purge = PurgeProc(url, cutoff, scale.purge_batch, _worker_env(base))
                await asyncio.to_thread(purge.first_batch)
            t = time.perf_counter()
            try:
                r = await _claim_loop(y, scale, scale.claim_backlog)
            finally:
                wall = time.perf_counter() - t
                p = purge.stop() if purge is not None else None
            if p is not None:
                r["purge"] = {
                    "purged": p["purged"],
                    "runs_per_s": round(p["purged"] / max(p["seconds"], 1e-9), 1),
                    "ran_out_during_claims": bool(p["finished"]),
                }
            r["wall_s"] = wall
            results[label] = r
            log(
                f"claims {label}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max "
                f"{r['max_ms']:.1f} ms over {r['n']} claims; {r.get('purge', '')}"
            )
        for label, r in results.items():
            emit(
                {
                    "figure": "claim_p99_ms" + ("_during_purge" if label != "alone" else ""),
                    **base,
                    "value": round(r["p99_ms"], 3),
                    "unit": "ms",
                    "p50_ms": round(r["p50_ms"], 3),
                    "max_ms": round(r["max_ms"], 3),
                    "n": r["n"],
                    "claim_limit": scale.claim_limit,
                    "backlog": scale.claim_backlog,
                    "purgeable": scale.purge_runs,
                    "lock_busy_retries": r["lock_busy_retries"],
                    **({"purge": r["purge"]} if "purge" in r else {}),
                    "method": f"a backlog of {scale.claim_backlog} no-op runs (yard.start), "
                    f"{scale.purge_runs} finished runs older than the retention cutoff in "
                    "the database; one producer-side loop claims "
                    f"{scale.claim_limit} items at a time with store.claim_txn through the "
                    "DbExecutor as the worker does (durable=False, a scan every 100 ms, "
                    "LockBusy retried as the worker does and counted in the latency), then "
                    "completes them (complete_item_txn, not timed); "
                    + (
                        "meanwhile a process of its own purges as retention does: "
                        "store.purge_txn(cutoff, store.purge_batch) in a loop through its "
                        "DbExecutor, resting store.purge_rest times a batch's time after each"
                        if label != "alone"
                        else "no purge running"
                    ),
                }
            )
    finally:
        counter.close()
        await y.aclose()


# -- the whole --------------------------------------------------------------------------


async def scale_backend(
    backend: str,
    opts: BenchOptions,
    scale: ScaleOptions,
    tmp: Path,
    logs: Path,
    common: dict[str, Any],
) -> None:
    base: dict[str, Any] = {**common, "backend": backend}
    if backend.startswith("sqlite"):
        base["sqlite_synchronous"] = os.environ.get("RUNYARD_SQLITE_SYNCHRONOUS", "FULL").upper()
    # The small backlog's drains come before and after the big one's (n=3: two, the big,
    # one): this machine's speed drifts within minutes, and the ratio compares them.
    n_small = max(1, scale.small_drains) if scale.backlog_small > 0 else 0
    big = scale.backlog_big > 0
    before = (n_small + 1) // 2 if big else n_small
    plan = [(scale.backlog_small, 0, k) for k in range(before)]
    plan += [(scale.backlog_big, scale.sleepers, -1)] if big else []
    plan += [(scale.backlog_small, 0, k) for k in range(before, n_small)]
    smalls: list[dict[str, Any]] = []
    big_line: dict[str, Any] | None = None
    for backlog, sleepers, k in plan:
        group = f"drain{backlog}" + (f"-{k + 1}" if k >= 0 and n_small > 1 else "")
        with scale_database(backend, opts, tmp, group) as url:
            log(f"== {backend} {group}: {url}")
            line = await drain_phase(
                url, opts, scale, logs / backend / group, base, backlog, sleepers
            )
        if k >= 0:
            smalls.append(line)
        else:
            big_line = line
    small: float | None = None
    if smalls:
        line = smalls[0] if len(smalls) == 1 else _median_line(smalls)
        small = float(line["value"])
        emit(line)
    if big_line is not None:
        if small:
            big_line["ratio_to_small"] = round(float(big_line["value"]) / small, 3)
        emit(big_line)
    if scale.history_runs > 0:
        with scale_database(backend, opts, tmp, "history") as url:
            log(f"== {backend} history: {url}")
            await history_phase(url, opts, scale, logs / backend / "history", base)
    if scale.claim_backlog > 0:
        with scale_database(backend, opts, tmp, "claims") as url:
            log(f"== {backend} claims: {url}")
            await claim_phase(url, opts, scale, base)


def _median_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The line of the median drain, with every drain's value beside it."""
    ordered = sorted(lines, key=lambda line: float(line["value"]))
    line = dict(ordered[len(ordered) // 2])
    line["samples"] = [line_["value"] for line_ in lines]
    line["method"] += (
        f"; the median of {len(lines)} drains, each on a fresh database (with the big "
        "backlog's: half of them before it, the rest after)"
    )
    return line


async def run_scale(opts: BenchOptions, scale: ScaleOptions) -> None:
    async with session(opts, "runyard-bench-scale-") as run:
        for backend in opts.backends:
            sqlite_durability(backend)
            await scale_backend(backend, opts, scale, run.tmp, run.logs, run.common)


__all__ = ["ScaleOptions", "run_scale", "template_runs"]
