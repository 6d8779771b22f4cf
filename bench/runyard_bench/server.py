"""A ``runyard server`` process for the figures measured over HTTP (the HTTP figures,
the scale figures' list latency)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .harness import log


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProc:
    """``python -m runyard server`` on a free loopback port, stopped with SIGTERM."""

    host = "127.0.0.1"

    def __init__(self, url: str, api_key: str, env: dict[str, str], log_path: Path) -> None:
        self.url = url
        self.api_key = api_key
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


__all__ = ["ServerProc"]
