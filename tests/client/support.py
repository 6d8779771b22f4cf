"""A real ``runyard server`` process on a loopback port, with real worker processes, on a
fresh database of either backend: what the SDK and CLI tests talk to."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from runyard import keys
from runyard.store import open_store
from runyard.store.dbexec import DbExecutor
from tests.conftest import ROOT, WorkerProcess, fresh_database
from tests.waiting import NotYet, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "200",
        **extra,
    }
    for name in ("RUNYARD_URL", "RUNYARD_API_KEY", "RUNYARD_DATABASE_URL"):
        if name not in extra:
            env.pop(name, None)
    return env


class ServerProcess:
    """``python -m runyard server --port N`` with an admin key in ``RUNYARD_API_KEY``."""

    def __init__(self, db_url: str, log: Path, api_key: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log = log
        self.env = cli_env(
            RUNYARD_DATABASE_URL=db_url,
            RUNYARD_API_KEY=api_key,
            RUNYARD_POLL_S="0.2",
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> ServerProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runyard",
                    "server",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                env=self.env,
                stdout=out,
                stderr=out,
                cwd=str(ROOT),
            )
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200

        wait_until(
            healthy,
            timeout=timeout,
            interval=0.1,
            ignoring=(httpx.TransportError,),
            what=f"the server healthy (log: {self.log})",
        )
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Served:
    """A running server (and workers) on a fresh database."""

    backend: str
    db_url: str
    url: str
    api_key: str  # admin, accepted through RUNYARD_API_KEY
    log_dir: Path

    def make_key(self, *scopes: str) -> str:
        """A key stored in the database (as ``runyard keys create`` does)."""
        key = keys.generate()
        store = open_store(self.db_url)
        db = DbExecutor(store)
        try:
            db.write_sync(
                store.create_api_key_txn, keys.key_id(key), "test", keys.digest(key), scopes
            )
        finally:
            db.close()
        return key


def wait_published(url: str, api_key: str, names: set[str], timeout: float = 30) -> None:
    """Until the worker has published ``names`` (runs are started by name)."""

    def published() -> bool | NotYet:
        answer = httpx.get(url + "/v1/workflows", headers={"x-api-key": api_key}, timeout=5)
        answer.raise_for_status()
        missing = names - {w["name"] for w in answer.json()["items"]}
        return not missing or NotYet({"not published": sorted(missing)})

    wait_until(published, timeout=timeout, interval=0.1, what=f"workflows {sorted(names)}")


@contextlib.contextmanager
def serve(
    backend: str, folder: Path, pg_template: str | None, app: str, workflows: set[str]
) -> Iterator[Served]:
    """A server and one worker process serving ``app`` on a fresh ``backend`` database,
    once the worker has published ``workflows``."""
    with fresh_database(backend, folder, pg_template) as db_url:
        server = ServerProcess(db_url, folder / "server.log", keys.generate())
        worker = WorkerProcess(app, db_url, concurrency=16, log=folder / "worker.log")
        try:
            worker.start()
            server.start()
            wait_published(server.url, server.api_key, workflows)
            yield Served(backend, db_url, server.url, server.api_key, folder)
        finally:
            server.stop()
            worker.terminate(timeout=15)
