"""``runyard dev``: server and worker in one process on a SQLite file in a fresh folder,
driven as a user would: read the printed URL, key and curl, and call them."""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from runyard.client import Client
from tests.client.support import cli_env, free_port
from tests.conftest import ROOT
from tests.waiting import wait_until


class DevProcess:
    def __init__(self, folder: Path, port: int, *args: str, **env: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runyard", "dev", *args, "--port", str(port)],
            cwd=str(folder),
            env=cli_env(PYTHONPATH=str(ROOT), RUNYARD_POLL_S="0.2", **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        def printed() -> re.Match[str] | None:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"runyard dev exited without printing {pattern!r}")
            return None

        try:
            return wait_until(printed, timeout=timeout, what=f"{pattern!r} in the output")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(self.lines)) from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def replay_curl(command: str) -> httpx.Response:
    """Do what the printed curl does, with httpx."""
    words = shlex.split(command)
    assert words[0] == "curl"
    method, url, headers, data = "GET", "", {}, None
    i = 1
    while i < len(words):
        word = words[i]
        if word == "-X":
            method, i = words[i + 1], i + 2
        elif word == "-H":
            name, _, value = words[i + 1].partition(":")
            headers[name.strip()] = value.strip()
            i += 2
        elif word in ("-d", "--data"):
            data, i = words[i + 1], i + 2
        elif word.startswith("-"):
            i += 1
        else:
            url, i = word, i + 1
    return httpx.request(method, url, headers=headers, content=data, timeout=60)


def test_dev_serves_the_examples(tmp_path: Path) -> None:
    port = free_port()
    dev = DevProcess(tmp_path, port)
    try:
        url = dev.wait_for(r"URL:\s+(http://\S+)").group(1)
        key = dev.wait_for(r"API key:\s+(ry_\w+)").group(1)
        curl = dev.wait_for(r"^\s+(curl .*)$").group(1)
        assert url == f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/healthz").json()["status"] == "ok"

        answer = replay_curl(curl)
        assert answer.status_code in (200, 201, 202), answer.text
        body = answer.json()
        run_id = body["run"]["id"] if "run" in body else body["id"]
        result = httpx.get(
            f"{url}/v1/runs/{run_id}/result",
            params={"timeout": 30},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert result.status_code == 200, result.text
        assert result.json()["status"] == "SUCCEEDED"
        assert result.json()["result"]["domain"] == "acme.com"
        # The database and the key in a folder of their own that git ignores; the key
        # readable only by its owner; the banner says where both are.
        folder = tmp_path / ".runyard"
        assert (folder / "runyard.db").exists() and not (tmp_path / "runyard.db").exists()
        assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
        key_file = folder / "runyard.db.key"
        assert key_file.read_text().strip() == key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert dev.wait_for(r"API key:.*kept in (\S+),").group(1) == str(key_file)
        assert str(folder / "runyard.db") in dev.wait_for(r"Database:\s+(.*)").group(1)
        assert dev.wait_for(r"runyard dev: database (.*)").group(1) == (
            f"sqlite:///.runyard/runyard.db ({folder / 'runyard.db'})"
        )
    finally:
        code = dev.stop()
    assert code == 0, "\n".join(dev.lines)

    # a second start on the same folder reuses the key (the printed curl keeps working)
    again = DevProcess(tmp_path, port)
    try:
        assert again.wait_for(r"API key:\s+(ry_\w+)").group(1) == key
        runs = httpx.get(f"{url}/v1/runs", headers={"x-api-key": key})
        assert run_id in [r["id"] for r in runs.json()["items"]]
    finally:
        assert again.stop(signal.SIGINT) == 0, "\n".join(again.lines)


def test_dev_with_a_given_key_and_app(tmp_path: Path) -> None:
    key = "ry_" + "a" * 38
    port = free_port()
    dev = DevProcess(
        tmp_path,
        port,
        "tests.apps.client_app:yard",
        RUNYARD_API_KEY=key,
        RUNYARD_DATABASE_URL=f"sqlite:///{tmp_path}/x.db",
    )
    try:
        assert dev.wait_for(r"API key:\s+(\S+)").group(1) == key
        assert "emit_many" in dev.wait_for(r"Workflows:\s+(.*)").group(1)
        url = f"http://127.0.0.1:{port}"
        with Client(url, key) as client:
            assert client.result(client.start_run("order", {"sku": "a", "qty": 2}).id, 30) == {
                "sku": "a",
                "qty": 2,
            }
        other = httpx.get(url + "/v1/workflows", headers={"x-api-key": "ry_other"})
        assert other.status_code == 401
    finally:
        assert dev.stop() == 0
    assert os.path.exists(tmp_path / "x.db")


def test_dev_banner_curl_works_for_the_app_served(tmp_path: Path) -> None:
    """The printed curl starts a workflow of the app with an input its schema accepts:
    here the first by name needs a nested model (a ``$ref``), which ``{}`` would not be."""
    port = free_port()
    dev = DevProcess(tmp_path, port, "tests.cli.first_hour_app:yard")
    try:
        curl = dev.wait_for(r"^\s+(curl .*)$").group(1)
        assert '"workflow": "approve_order"' in curl
        answer = replay_curl(curl)
        assert answer.status_code == 200, answer.text
        assert answer.json()["run"]["status"] == "SUCCEEDED", answer.text
        assert answer.json()["run"]["result"]["qty"] >= 2
    finally:
        assert dev.stop() == 0, "\n".join(dev.lines)
