"""The HTTP figures of ``runyard bench``: the engine behind a real ``runyard server``.

Per backend, on the benchmark's fresh database, after the engine figures: one
``python -m runyard server`` process on a free loopback port (``RUNYARD_API_KEY`` set to a
key made here) and worker processes serving :data:`yard` below (the benchmark's workflows
plus ``sleep_step``). The clients (:class:`_Conn`, one keep-alive connection each)
run in a process of their own, ``python -m runyard.bench_http SPEC``, one per phase.

* ``http_async_triggers_per_s``: ``POST /v1/runs`` (async, ``noop``) from
  ``http_concurrency`` clients with one request in flight each; value = accepted (201)
  requests per second; also the end-to-end completion rate, read from the store;
* ``http_live_rtt_p50_ms`` / ``_p99_ms``: sequential live-mode ``POST /v1/runs`` of
  ``noop``, from sending the request to the 200 carrying the result;
* ``long_poll_wake_p50_ms`` / ``_p99_ms``: ``GET /v1/runs/{id}/result?timeout=30``
  opened while a ``sleep_step`` run sleeps; (answer received) - (the run's
  ``finished_at``), both on this machine's clock.

The server, the workers and the client process are stopped on the way out, Ctrl-C and
SIGTERM included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from . import jsonutil, keys, loop
from .app import Runyard
from .bench import (
    BenchOptions,
    StoreCounter,
    WorkerProcs,
    _poll,
    _postgres_cpu_s,
    _proc_cpu_s,
    build_yard,
    emit,
    log,
    percentile,
)
from .engine.context import Context

#: Targets of the issue, repeated in each figure's ``target``.
TARGET_TRIGGERS_PER_S = 2000.0
TARGET_LIVE_P50_MS_SQLITE = 5.0
TARGET_WAKE_MS = 5.0

#: How long the ``sleep_step`` run of a wake sample sleeps (the long-poll is open by then).
WAKE_SLEEP_MS = 50

# -- the workflow the long-poll waits on ------------------------------------------------


async def _sleep_ms(ms: int) -> int:
    await asyncio.sleep(ms / 1000.0)
    return ms


async def sleep_step(ctx: Context, ms: int) -> int:
    """One checkpointed step that sleeps ``ms`` milliseconds."""
    result: int = await ctx.step("sleep", _sleep_ms, ms)
    return result


def build_http_yard(database_url: str | None = None) -> Runyard:
    y = build_yard(database_url)
    y.workflow(name="sleep_step")(sleep_step)
    return y


#: What the HTTP phase's worker processes serve: ``runyard worker runyard.bench_http:yard``.
yard = build_http_yard()


class HttpWorkerProcs(WorkerProcs):
    target = "runyard.bench_http:yard"


# -- the server process -----------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProc:
    """``python -m runyard server`` on a free loopback port, stopped with SIGTERM."""

    host = "127.0.0.1"

    def __init__(self, url: str, api_key: str, env: dict[str, str], log_path: Path) -> None:
        self.url = url
        self.env = {**os.environ, **env, "RUNYARD_DATABASE_URL": url, "RUNYARD_API_KEY": api_key}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self) -> None:
        self.port = _free_port(self.host)
        argv = [
            sys.executable,
            "-m",
            "runyard",
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--database-url",
            self.url,
            "--log-level",
            "warning",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            # A session of its own: Ctrl-C in the terminal reaches this process only,
            # which stops the server in its ``finally``.
            self.proc = subprocess.Popen(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"server {self.proc.pid} exited with {self.proc.returncode}; "
                f"log {self.log_path}:\n{tail}"
            )

    async def start(self, timeout: float = 60.0) -> None:
        """Spawn and wait for ``/healthz`` to answer 200 (a new port if the one picked was
        taken in between)."""
        for attempt in range(3):
            self._spawn()
            deadline = time.perf_counter() + timeout
            async with httpx.AsyncClient(base_url=self.base_url, timeout=5.0) as c:
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await c.get("/healthz")).status_code == 200:
                            return
                    assert self.proc is not None
                    if self.proc.poll() is not None:
                        if attempt < 2:
                            log(f"server exited with {self.proc.returncode}; trying another port")
                            break
                        self.check()
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"server not healthy after {timeout:.0f} s")
                    await asyncio.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int | None:
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(10)
            return None


# -- CPU over a window ----------------------------------------------------------------------


class _Cpu:
    """CPU seconds of this process (the clients), the server, the workers and PostgreSQL."""

    def __init__(self, server_pid: int, worker_pids: list[int], postgres: bool) -> None:
        self.server_pid, self.worker_pids, self.postgres = server_pid, worker_pids, postgres
        self.t0 = time.perf_counter()
        self.s0 = self._sample()

    def _sample(self) -> dict[str, float | None]:
        w = [_proc_cpu_s(p) for p in self.worker_pids]
        return {
            "clients": time.process_time(),
            "server": _proc_cpu_s(self.server_pid),
            "workers": None if None in w else sum(x for x in w if x is not None),
            "postgres": _postgres_cpu_s() if self.postgres else None,
        }

    def report(self, n: int) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """(CPU ms per request, cores busy) of each party since construction."""
        wall = time.perf_counter() - self.t0
        s1 = self._sample()
        per: dict[str, float | None] = {}
        busy: dict[str, float | None] = {}
        for k, v0 in self.s0.items():
            v1 = s1[k]
            if v0 is None or v1 is None:
                per[k] = busy[k] = None
            else:
                per[k] = round(1000.0 * (v1 - v0) / n, 3)
                busy[k] = round((v1 - v0) / wall, 2)
        return per, busy


# -- the clients (in a process of their own) ------------------------------------------------
#
# ``python -m runyard.bench_http SPEC`` runs one phase and prints its result as one JSON
# line. The benchmark process is not a clean client: it carries the engine's threads (the
# SQLite change watcher polls every millisecond) that would share the clients' GIL.


def _check_status(r: _Response, expected: int, what: str) -> dict[str, Any]:
    if r.status_code != expected:
        raise RuntimeError(f"{what}: HTTP {r.status_code}, expected {expected}: {r.text[:500]}")
    body: dict[str, Any] = r.json()
    return body


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class _Response:
    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Conn:
    """The load generator: one keep-alive HTTP/1.1 connection, one request at a time.

    A benchmark client must not take the CPU of what it measures: the server, the workers
    and the clients share this machine's cores. httpx spends about 1.5 ms of CPU per
    request (measured here), more than the server; this spends about 0.1 ms, like the
    clients written for the job (wrk, oha)."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        u = urlsplit(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.timeout = timeout
        self._head = f"host: {u.netloc}\r\nx-api-key: {api_key}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> _Conn:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        w, self._writer, self._reader = self._writer, None, None
        if w is not None:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()

    async def post(self, path: str, json: Any) -> _Response:
        return await self.request("POST", path, jsonutil.dumps(json).encode())

    async def get(self, path: str, params: dict[str, Any] | None = None) -> _Response:
        return await self.request("GET", path + (f"?{urlencode(params)}" if params else ""))

    async def request(self, method: str, target: str, body: bytes | None = None) -> _Response:
        async with asyncio.timeout(self.timeout):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._reader, self._writer
            assert reader is not None
            head = f"{method} {target} HTTP/1.1\r\n{self._head}"
            if body is not None:
                head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + (body or b""))
            lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            status = int(lines[0].split()[1])
            length, chunked, close = 0, False, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value
                elif name == b"connection":
                    close = value == b"close"
            if chunked:
                parts = []
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    parts.append(await reader.readexactly(size + 2))
                await reader.readuntil(b"\r\n")
                content = b"".join(p[:-2] for p in parts)
            else:
                content = await reader.readexactly(length)
        if close:
            await self.aclose()
        return _Response(status, content)


def _client(spec: dict[str, Any]) -> _Conn:
    return _Conn(spec["base_url"], spec["api_key"])


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "mean_ms": sum(values) / len(values),
        "min_ms": min(values),
        "max_ms": max(values),
    }


async def _async_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """``n`` async POSTs of ``noop`` from ``concurrency`` clients, one request in flight
    each; every answer must be 201."""
    n, conc = spec["n"], max(1, min(spec["concurrency"], spec["n"]))
    clients = [_client(spec) for _ in range(conc)]
    try:
        # Each client opens its connection (runs counted in warmup_runs).
        for resp in await asyncio.gather(
            *(c.post("/v1/runs", json={"workflow": "noop", "input": 0}) for c in clients)
        ):
            _check_status(resp, 201, "warm-up POST")
        statuses: collections.Counter[int] = collections.Counter()
        first_error: list[str] = []
        lat: list[float] = []
        nxt = 0

        async def client_loop(c: _Conn) -> None:
            nonlocal nxt
            while nxt < n:
                i = nxt
                nxt += 1
                t = time.perf_counter()
                r = await c.post("/v1/runs", json={"workflow": "noop", "input": i})
                lat.append((time.perf_counter() - t) * 1000.0)
                statuses[r.status_code] += 1
                if r.status_code != 201 and not first_error:
                    first_error.append(f"HTTP {r.status_code}: {r.text[:300]}")

        cpu = _Cpu(spec["server_pid"], spec["worker_pids"], spec["postgres"])
        t0_wall, t0 = time.time(), time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        accept_s = time.perf_counter() - t0
        cpu_per, busy = cpu.report(n)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    if statuses[201] != n:
        raise RuntimeError(f"async POSTs: {dict(statuses)} of {n}; first: {first_error[0]}")
    return {
        "n": n,
        "in_flight": conc,
        "warmup_runs": conc,
        "t0_wall": t0_wall,
        "accept_s": accept_s,
        "request_p50_ms": percentile(lat, 50),
        "request_p99_ms": percentile(lat, 99),
        "cpu_ms_per_request": cpu_per,
        "cpu_cores_busy": busy,
    }


#: The run's own times, from the database clock (taken at the statement, before its commit).
_MARKS = ("created_at", "started_at", "finished_at")
_SEGMENTS = ("sent_to_created", "created_to_started", "started_to_finished", "finished_to_received")


async def _live_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """Sequential live-mode POSTs of ``noop`` on one keep-alive connection."""
    rnd = random.Random(12345)
    body = {"workflow": "noop", "input": 0, "mode": "live", "wait_timeout": 30}
    lat: list[float] = []
    parts: dict[str, list[float]] = {name: [] for name in _SEGMENTS}
    async with _client(spec) as c:
        for k in range(spec["warmup"] + spec["n"]):
            if spec["jitter_s"] > 0:
                await asyncio.sleep(rnd.uniform(0, spec["jitter_s"]))
            w0 = time.time()
            t = time.perf_counter()
            resp = await c.post("/v1/runs", json=body)
            dt = (time.perf_counter() - t) * 1000.0
            w1 = time.time()
            out = _check_status(resp, 200, "live POST")
            run = out["run"]
            if run["status"] != "SUCCEEDED" or run["result"] != 1:
                raise RuntimeError(f"live POST: unexpected run {run}")
            if k >= spec["warmup"]:
                lat.append(dt)
                marks = [w0, *(_epoch(run[f]) for f in _MARKS), w1]
                for name, a, b in zip(_SEGMENTS, marks, marks[1:], strict=False):
                    parts[name].append((b - a) * 1000.0)
    return {
        **_summary(lat),
        "segments_p50_ms": {name: round(percentile(v, 50), 3) for name, v in parts.items()},
    }


async def _wake_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """Per sample: start ``sleep_step`` (async), open the long-poll at once, and take
    (answer received) - (finished_at), on the wall clock the database also uses."""
    rnd = random.Random(54321)
    wake: list[float] = []
    again: list[float] = []
    late = 0
    async with _client(spec) as c:
        for k in range(spec["warmup"] + spec["n"]):
            if spec["jitter_s"] > 0:
                await asyncio.sleep(rnd.uniform(0, spec["jitter_s"]))
            resp = await c.post(
                "/v1/runs", json={"workflow": "sleep_step", "input": spec["sleep_ms"]}
            )
            run_id = _check_status(resp, 201, "sleep_step POST")["id"]
            t_open = time.time()
            resp = await c.get(f"/v1/runs/{run_id}/result", params={"timeout": 30})
            t_recv = time.time()
            run = _check_status(resp, 200, "long-poll")
            if run["status"] != "SUCCEEDED" or run["finished_at"] is None:
                raise RuntimeError(f"long-poll: unexpected run {run}")
            finished = _epoch(run["finished_at"])
            # The same request once the run is over: what answering costs without a wait.
            t = time.perf_counter()
            _check_status(
                await c.get(f"/v1/runs/{run_id}/result", params={"timeout": 30}), 200, "GET"
            )
            again_ms = (time.perf_counter() - t) * 1000.0
            if t_open >= finished:
                late += 1  # the run finished before the poll was sent: not a wake-up
            elif k >= spec["warmup"]:
                wake.append((t_recv - finished) * 1000.0)
                again.append(again_ms)
    if not wake:
        raise RuntimeError(f"long-poll: every run finished before its poll was sent ({late})")
    return {
        **_summary(wake),
        "late_opens": late,
        "finished_run_get_p50_ms": percentile(again, 50),
    }


_PHASES = {"async": _async_phase, "live": _live_phase, "wake": _wake_phase}


def client_main(argv: list[str]) -> None:
    """``python -m runyard.bench_http SPEC``: one phase; its result on stdout."""
    spec = json.loads(argv[0])
    result = loop.run(_PHASES[spec["phase"]](spec))
    print(json.dumps(result), flush=True)


async def _run_clients(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one phase in a client process (killed on the way out, Ctrl-C included)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runyard.bench_http",
        json.dumps(spec),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10)
    if proc.returncode != 0:
        raise RuntimeError(f"the {spec['phase']} client process exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# -- the benchmark process ------------------------------------------------------------------


async def _warm_up(base_url: str, api_key: str, server: ServerProc, workers: WorkerProcs) -> None:
    """Until both workflows are published and runs of them complete through the server."""
    deadline = time.perf_counter() + 60
    async with _client({"base_url": base_url, "api_key": api_key}) as c:
        for workflow, value in (("noop", 0), ("sleep_step", 1)):
            while True:
                r = await c.post(
                    "/v1/runs",
                    json={"workflow": workflow, "input": value, "mode": "live", "wait_timeout": 30},
                )
                if r.status_code == 200:
                    break
                server.check()
                workers.check()
                if r.status_code not in (404, 422) or time.perf_counter() > deadline:
                    _check_status(r, 200, f"warm-up {workflow}")
                await asyncio.sleep(0.1)  # not published yet by the workers
        for _ in range(20):
            _check_status(
                await c.post("/v1/runs", json={"workflow": "noop", "input": 0}), 201, "warm-up"
            )


async def async_triggers(
    spec: dict[str, Any],
    counter: StoreCounter,
    server: ServerProc,
    workers: WorkerProcs,
    opts: BenchOptions,
) -> dict[str, Any]:
    """The async phase in the client process, then the drain, read from the store."""
    # Whatever the warm-up left running ends first, so the drain counts these runs only.
    await _poll(lambda: counter.open_runs("noop") == 0, opts.timeout_s, "warm-up", workers)
    base_ok, base_bad = await asyncio.to_thread(counter.outcomes, "noop")
    a = await _run_clients(
        {**spec, "phase": "async", "n": opts.http_runs, "concurrency": opts.http_concurrency},
        opts.timeout_s,
    )
    n, expected = a["n"], a["n"] + a["warmup_runs"]
    log(f"http async: {n} accepted in {a['accept_s']:.3f}s ({n / a['accept_s']:.0f}/s); draining")
    await _poll(lambda: counter.open_runs("noop") == 0, opts.timeout_s, "HTTP runs", workers)
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
        "clients": "one keep-alive HTTP/1.1 connection each (asyncio streams, uvloop), "
        "in a separate process",
    }
    jitter_ms = f"{opts.latency_jitter_s * 1000:.0f}"
    try:
        workers = HttpWorkerProcs(url, opts.workers, opts.concurrency, env, logs)
        await server.start()
        log(
            f"{label}: HTTP server pid {server.pid} on {server.base_url}, "
            f"{opts.workers} worker process(es) {workers.pids} (logs: {logs})"
        )
        counter = StoreCounter(y)
        await _warm_up(server.base_url, api_key, server, workers)
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
        if opts.http_live_runs > 0:
            r = await _run_clients(
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
        if opts.http_wake_runs > 0:
            warm = 5
            r = await _run_clients(
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


__all__ = [
    "HttpWorkerProcs",
    "ServerProc",
    "build_http_yard",
    "client_main",
    "http_figures",
    "sleep_step",
    "yard",
]

if __name__ == "__main__":
    client_main(sys.argv[1:])
