"""The callback figures of ``runyard bench --callbacks`` (issue 21), one JSON line each.

Method, per backend, on a fresh database:

* a loopback receiver in a process of its own (``python -m runyard_bench.callbacks
  receive PORT OUT``: asyncio, HTTP/1.1, answers 200 to every POST, writes the arrival
  time of each message to OUT when stopped); one ``runyard worker`` process serving
  :data:`yard` with ``RUNYARD_OUTBOUND_ALLOW=127.0.0.0/8``;
* ``callback_deliveries_per_s``: ``--callback-messages`` messages (a 1 KB body each)
  written to ``deliveries`` through the store before the worker starts, then the worker
  delivers them (signed, through the outbound guard, connections kept alive per checked
  destination); the rate is messages / (last arrival - first arrival);
* ``callback_latency_p50_ms``/``_p99_ms``: ``--callback-runs`` runs of ``cb_noop`` with a
  callback, started 20 ms apart after 20 warm-up runs; the latency of a run is the
  arrival of its ``run.finished`` message minus the run's ``finished_at`` (both this
  machine's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runyard import Context, Runyard

from .harness import BenchOptions, emit, fresh_database, session, sqlite_durability

yard = Runyard()


@yard.workflow
async def cb_noop(ctx: Context, x: int) -> int:
    return x


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class _Proc:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.out = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, env=env, stdout=self.out, stderr=self.out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_callbacks(opts: BenchOptions, messages: int = 5000, runs: int = 200) -> None:
    """The callback figures for each backend of ``opts`` (see the module)."""
    async with session(opts, "runyard-bench-callbacks-") as s:
        for backend in opts.backends:
            await _backend(backend, opts, s.tmp, s.common, messages, runs)


async def _backend(
    backend: str, opts: BenchOptions, tmp: Path, common: dict[str, Any], messages: int, runs: int
) -> None:
    sqlite_durability(backend)
    os.environ["RUNYARD_OUTBOUND_ALLOW"] = "127.0.0.0/8"  # (this process checks the URLs)
    env = {
        **os.environ,
        "RUNYARD_OUTBOUND_ALLOW": "127.0.0.0/8",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1])
        + os.pathsep
        + os.environ.get("PYTHONPATH", ""),
    }
    logs = tmp / "logs" / backend
    with fresh_database(backend, opts, tmp) as url:
        env["RUNYARD_DATABASE_URL"] = url
        y = Runyard(url)
        for name, wf in yard.workflows.items():
            y.workflows[name] = wf
        await asyncio.to_thread(y.migrate)
        base = {"backend": backend, **common}
        port = _free_port()
        out = tmp / f"{backend}-arrivals.json"
        receiver = _Proc(
            [sys.executable, "-m", "runyard_bench.callbacks", "receive", str(port), str(out)],
            env,
            logs / "receiver.log",
        )
        worker: _Proc | None = None
        try:
            await asyncio.sleep(0.5)
            hook = f"http://127.0.0.1:{port}/hook"
            if messages:
                await y.webhook_secrets()
                body = json.dumps({"type": "run.finished", "pad": "x" * 1000})
                rows = [
                    {
                        "message_id": f"msg_bench_{i}",
                        "run_id": f"run_bench_{i // 100}",
                        "item_idx": 0,
                        "url": hook,
                        "headers": "{}",
                        "kind": "finished",
                        "body": body,
                    }
                    for i in range(messages)
                ]

                def insert(tx: Any, batch: list[dict[str, Any]]) -> None:
                    for r in batch:
                        y.core.store.insert_delivery(tx, r)

                for i in range(0, messages, 1000):
                    await y.core.write(insert, rows[i : i + 1000], inline=False)
            worker = _Proc(
                [
                    sys.executable,
                    "-m",
                    "runyard",
                    "worker",
                    "runyard_bench.callbacks:yard",
                    "--log-level",
                    "warning",
                ],
                env,
                logs / "worker.log",
            )
            if messages:
                deadline = time.time() + opts.timeout_s
                while time.time() < deadline:
                    if not await _pending(y):
                        break
                    await asyncio.sleep(0.5)
            handles = []
            for i in range(20 + runs):
                handles.append(await y.start(cb_noop, i, callback={"url": hook}))
                await asyncio.sleep(0.02)
            deadline = time.time() + opts.timeout_s
            while time.time() < deadline and await _pending(y):
                await asyncio.sleep(0.5)
            ended = {h.id: (await y.get_run(h.id)).finished_at for h in handles[20:]}
        finally:
            if worker is not None:
                worker.stop()
            receiver.stop()
        arrivals: dict[str, Any] = json.loads(out.read_text())
        if messages:
            times = sorted(
                t for mid, t in arrivals["by_id"].items() if mid.startswith("msg_bench_")
            )
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            emit(
                {
                    **base,
                    "figure": "callback_deliveries_per_s",
                    "value": round(rate, 1),
                    "messages": len(times),
                    "method": "messages written before the worker starts; 1 worker, "
                    "signed, guarded, connections kept alive; rate over first..last arrival",
                }
            )
        lat = []
        for run_id, finished in ended.items():
            got = arrivals["finished"].get(run_id)
            if got is not None and finished is not None:
                fin = finished.timestamp() if hasattr(finished, "timestamp") else float(finished)
                lat.append((got - fin) * 1000)
        if lat:
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                emit(
                    {
                        **base,
                        "figure": f"callback_latency_{name}_ms",
                        "value": round(_pct(lat, q), 2),
                        "runs": len(lat),
                        "method": "run finished_at -> run.finished message received",
                    }
                )
        y.close()


async def _pending(y: Runyard) -> int:
    def count(tx: Any) -> int:
        row = tx.q1("next_delivery_due")
        return 0 if row is None or row["wait_s"] is None else 1

    return int(await y.core.read(count))


async def _receive(port: int, out: Path) -> None:
    by_id: dict[str, float] = {}
    finished: dict[str, float] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                msg_id = ""
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.decode().partition(":")
                    if k.lower() == "content-length":
                        length = int(v)
                    elif k.lower() == "webhook-id":
                        msg_id = v.strip()
                body = await reader.readexactly(length)
                now = time.time()
                by_id.setdefault(msg_id, now)
                if b'"run.finished"' in body and b'"run_id"' in body:
                    payload = json.loads(body)
                    finished.setdefault(payload.get("run_id", ""), now)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    out.write_text(json.dumps({"by_id": by_id, "finished": finished}))


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        asyncio.run(_receive(int(sys.argv[2]), Path(sys.argv[3])))
