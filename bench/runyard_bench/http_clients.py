"""The load generator of the HTTP figures, in a process of its own:
``python -m runyard_bench.http_clients SPEC`` runs one phase (``async``, ``live`` or
``wake``, see :mod:`runyard_bench.http_figures`) and prints its result as one JSON line.

The benchmark process is not a clean client: it carries the engine's threads (the SQLite
change watcher polls every millisecond) that would share the clients' GIL. Each client is
one aiohttp session holding one keep-alive HTTP/1.1 connection, one request at a time.
(A client must not take the CPU of what it measures, which shares this machine's cores:
httpx spends about 1 ms of CPU per request here, twice what the server does; aiohttp,
whose parser is compiled, about 0.15 ms.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp

from runyard import loop

from .measure import percentile, postgres_cpu_s, proc_cpu_s


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """One keep-alive HTTP/1.1 connection to ``base_url``, one request at a time."""

    _JSON = {"content-type": "application/json"}

    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        self._base = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers={"x-api-key": api_key},
            connector=aiohttp.TCPConnector(limit=1),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.close()

    async def post(self, path: str, body: Any) -> Response:
        data = json.dumps(body, separators=(",", ":")).encode()
        async with self._session.post(self._base + path, data=data, headers=self._JSON) as r:
            return Response(r.status, await r.read())

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Response:
        async with self._session.get(self._base + path, params=params) as r:
            return Response(r.status, await r.read())


def check_status(r: Response, expected: int, what: str) -> dict[str, Any]:
    """The JSON body of ``r``, which must have status ``expected``."""
    if r.status_code != expected:
        raise RuntimeError(f"{what}: HTTP {r.status_code}, expected {expected}: {r.text[:500]}")
    body: dict[str, Any] = r.json()
    return body


def _client(spec: dict[str, Any]) -> Client:
    return Client(spec["base_url"], spec["api_key"])


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "mean_ms": sum(values) / len(values),
        "min_ms": min(values),
        "max_ms": max(values),
    }


# -- CPU over a window ---------------------------------------------------------------------


class _Cpu:
    """CPU seconds of this process (the clients), the server, the workers and PostgreSQL."""

    def __init__(self, server_pid: int, worker_pids: list[int], postgres: bool) -> None:
        self.server_pid, self.worker_pids, self.postgres = server_pid, worker_pids, postgres
        self.t0 = time.perf_counter()
        self.s0 = self._sample()

    def _sample(self) -> dict[str, float | None]:
        w = [proc_cpu_s(p) for p in self.worker_pids]
        return {
            "clients": time.process_time(),
            "server": proc_cpu_s(self.server_pid),
            "workers": None if None in w else sum(x for x in w if x is not None),
            "postgres": postgres_cpu_s() if self.postgres else None,
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


# -- the phases ----------------------------------------------------------------------------


async def _async_phase(spec: dict[str, Any]) -> dict[str, Any]:
    """``n`` async POSTs of ``noop`` from ``concurrency`` clients, one request in flight
    each; every answer must be 201."""
    n, conc = spec["n"], max(1, min(spec["concurrency"], spec["n"]))
    clients = [_client(spec) for _ in range(conc)]
    try:
        # Each client opens its connection (runs counted in warmup_runs).
        for resp in await asyncio.gather(
            *(c.post("/v1/runs", {"workflow": "noop", "input": 0}) for c in clients)
        ):
            check_status(resp, 201, "warm-up POST")
        statuses: collections.Counter[int] = collections.Counter()
        first_error: list[str] = []
        lat: list[float] = []
        nxt = 0

        async def client_loop(c: Client) -> None:
            nonlocal nxt
            while nxt < n:
                i = nxt
                nxt += 1
                t = time.perf_counter()
                r = await c.post("/v1/runs", {"workflow": "noop", "input": i})
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
            resp = await c.post("/v1/runs", body)
            dt = (time.perf_counter() - t) * 1000.0
            w1 = time.time()
            out = check_status(resp, 200, "live POST")
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
            resp = await c.post("/v1/runs", {"workflow": "sleep_step", "input": spec["sleep_ms"]})
            run_id = check_status(resp, 201, "sleep_step POST")["id"]
            t_open = time.time()
            resp = await c.get(f"/v1/runs/{run_id}/result", params={"timeout": 30})
            t_recv = time.time()
            run = check_status(resp, 200, "long-poll")
            if run["status"] != "SUCCEEDED" or run["finished_at"] is None:
                raise RuntimeError(f"long-poll: unexpected run {run}")
            finished = _epoch(run["finished_at"])
            # The same request once the run is over: what answering costs without a wait.
            t = time.perf_counter()
            check_status(
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


def main(argv: list[str]) -> None:
    """``python -m runyard_bench.http_clients SPEC``: one phase; its result on stdout."""
    spec = json.loads(argv[0])
    result = loop.run(_PHASES[spec["phase"]](spec))
    print(json.dumps(result), flush=True)


async def run_clients(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one phase in a client process (killed on the way out, Ctrl-C included)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runyard_bench.http_clients",
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


__all__ = ["Client", "Response", "check_status", "run_clients"]

if __name__ == "__main__":
    main(sys.argv[1:])
