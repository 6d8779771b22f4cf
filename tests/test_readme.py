"""The README's set-up commands do what it says, in a fresh virtual environment."""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.waiting import NotYet, wait_until


def _block_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(re.escape(marker) + r"\s*```bash\n(.*?)```", text, re.S)
    assert m, f"README has no command after {marker}"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command() -> None:
    cmd = _block_after("<!-- test-command -->")
    assert "pytest" in cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci  # .ci/run extracts and runs exactly that block


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_start_command_in_a_fresh_venv_serves_the_examples(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    cmd = _block_after("<!-- start-command -->")
    port = _free_port()
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "VIRTUAL_ENV"))},
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RUNYARD_PORT": str(port),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    # The README command installs from the repository root; run it there, with the
    # database in a scratch folder.
    env["RUNYARD_DATABASE_URL"] = f"sqlite:///{workdir / 'runyard.db'}"
    log = open(tmp_path / "dev.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["bash", "-c", cmd],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        url = f"http://127.0.0.1:{port}"

        def key_printed_and_serving() -> str | NotYet:
            out = (tmp_path / "dev.log").read_text(errors="replace")
            if proc.poll() is not None:
                raise AssertionError(f"the start command exited:\n{out[-3000:]}")
            found = re.search(r"API key:\s+(ry_\w+)", out)
            if not found:
                return NotYet("no API key printed yet")
            try:
                status = httpx.get(f"{url}/healthz", timeout=2).status_code
            except httpx.HTTPError as exc:
                return NotYet(exc)
            return found.group(1) if status == 200 else NotYet(status)

        # pip installs from the registry, then the server starts.
        key = wait_until(
            key_printed_and_serving, timeout=240, interval=0.5, what="runyard dev serving"
        )
        assert httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"
        resp = httpx.post(
            f"{url}/v1/runs",
            headers={"Authorization": f"Bearer {key}"},
            json={"workflow": "enrich_companies", "input": {"domain": "acme.com"}, "mode": "live"},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["run"]["result"]["name"] == "Acme"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _variables_read_by_the_code() -> set[str]:
    """Every ``RUNYARD_*`` name in a string of ``src/`` (docstrings aside: they quote
    examples), as the code reads it: ``os.environ``, ``envvar=``, settings helpers."""
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                names.update(re.findall(r"\bRUNYARD_[A-Z0-9_]*[A-Z0-9]\b", node.value))
    return names


def test_the_configuration_table_lists_every_variable_the_code_reads() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(RUNYARD_[A-Z0-9_]+)` \|([^|]*)\|([^|]*)\|$", section, re.M)
    listed = {name for name, _default, meaning in rows if meaning.strip()}
    read = _variables_read_by_the_code()
    assert {"RUNYARD_DATABASE_URL", "RUNYARD_PORT", "RUNYARD_RETENTION_DAYS"} <= read
    assert read - listed == set(), "README's configuration table lacks these (with a meaning)"
    defaults = {name: default.strip() for name, default, _meaning in rows}
    assert defaults["RUNYARD_RETENTION_DAYS"] == "`30`"


def test_the_readme_stands_alone() -> None:
    """Every link and path the README gives is inside the repository and exists; the
    first screen says what Runyard is and gives the start command."""
    text = (ROOT / "README.md").read_text()
    assert "../" not in text
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        assert (ROOT / target).resolve().is_relative_to(ROOT.resolve()), target
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    first_screen = "\n".join(text.splitlines()[:40])
    assert "<!-- start-command -->" in first_screen and "virtual environment" in first_screen
    assert "```mermaid" in text and "SCHEDULED" in text
    for doc in ("docs/architecture.md", "docs/benchmarks.md", "docs/operations.md"):
        assert f"]({doc}" in text, f"README does not link {doc}"
        assert "../" not in (ROOT / doc).read_text(), doc
