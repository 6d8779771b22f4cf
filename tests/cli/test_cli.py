"""The CLI in subprocesses against a real server and worker, on both backends."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import httpx

from runyard.client import Client, Unauthorized
from tests.cli.conftest import runyard
from tests.client.support import Served, cli_env, free_port
from tests.conftest import ROOT
from tests.waiting import NotYet, wait_until


def test_run_wait_json_prints_the_run(served: Served, api_env: dict[str, str]) -> None:
    done = runyard(
        "run",
        "enrich_companies",
        "--input",
        '{"domain": "acme.com"}',
        "--wait",
        "--json",
        env=api_env,
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "SUCCEEDED"
    assert run["result"] == {
        "domain": "acme.com",
        "name": "Acme",
        "score": run["result"]["score"],
        "people": 3,
    }

    run_id = f"cli-{secrets.token_hex(4)}"
    human = runyard(
        "run",
        "sync_feed",
        "--run-id",
        run_id,
        "--sync-mode",
        "incremental",
        "--wait",
        env=api_env,
    )
    assert human.returncode == 0, human.stderr
    assert f"run {run_id} SUCCEEDED" in human.stdout
    assert '"new_entries": 5' in human.stdout
    assert "SUCCEEDED" in human.stderr  # plain progress lines, not a bar: no terminal here

    listed = runyard("runs", "ls", "--json", "--workflow", "sync_feed", env=api_env)
    assert listed.returncode == 0, listed.stderr
    assert run_id in [r["id"] for r in json.loads(listed.stdout)["items"]]
    for args, expected in (
        (["runs", "show", run_id], "SUCCEEDED"),
        (["runs", "steps", run_id], "emit"),
        (["runs", "queue", run_id, "--history"], "completed"),
        (["runs", "outputs", run_id, "--all"], "entry"),
        (["runs", "inputs", run_id], "completed"),
        (["runs", "ls"], run_id),
        (["workflows", "ls"], "sync_feed"),
    ):
        shown = runyard(*args, env=api_env)
        assert shown.returncode == 0, (args, shown.stderr)
        assert expected in shown.stdout, (args, shown.stdout)
    outputs = json.loads(runyard("runs", "outputs", run_id, "--json", env=api_env).stdout)
    assert [o["data"]["entry"] for o in outputs["items"]] == [1, 2, 3, 4, 5]
    again = runyard("runs", "continue", run_id, "--json", env=api_env)
    assert json.loads(again.stdout)["status"] == "QUEUED", again.stderr


def test_failed_run_exits_non_zero(served: Served, api_env: dict[str, str]) -> None:
    batch = runyard(
        "run",
        "enrich_companies",
        "--inputs",
        '[{"domain": "acme.com"}, {"domain": "BAD"}]',
        "--wait",
        "--json",
        env=api_env,
    )
    assert json.loads(batch.stdout)["status"] == "PARTIAL_SUCCEEDED"
    assert batch.returncode == 0
    approval = runyard(
        "run", "approval", "--input", '{"amount": 5, "reason": "pens"}', "--json", env=api_env
    )
    run_id = json.loads(approval.stdout)["id"]
    canceled = runyard("runs", "cancel", run_id, env=api_env)
    assert canceled.returncode == 0 and "CANCELED" in canceled.stdout
    waited = runyard("runs", "wait", run_id, "--json", env=api_env)
    assert waited.returncode == 1 and json.loads(waited.stdout)["status"] == "CANCELED"


def test_tasks_and_notify(served: Served, api_env: dict[str, str]) -> None:
    created = runyard(
        "tasks",
        "create",
        "--workflow",
        "approval",
        "--name",
        "expenses",
        "--input",
        '{"amount": 12.5, "reason": "books"}',
        "--json",
        env=api_env,
    )
    assert created.returncode == 0, created.stderr
    task_id = json.loads(created.stdout)["id"]
    assert task_id in runyard("tasks", "ls", env=api_env).stdout
    started = runyard("tasks", "execute", task_id, "--json", env=api_env)
    run_id = json.loads(started.stdout)["id"]
    with Client(served.url, served.api_key) as client:
        for _ in range(100):
            if client.waiters(f"approve:{run_id}"):
                break
            client.get_result(run_id, 0.1)
    notified = runyard(
        "notify", f"approve:{run_id}", "--data", '{"approved": true}', "--json", env=api_env
    )
    assert json.loads(notified.stdout)["woken"] == [run_id], notified.stderr
    with Client(served.url, served.api_key) as client:
        assert client.result(run_id, timeout=30)["approved"] is True
    assert runyard("tasks", "delete", task_id, env=api_env).returncode == 0
    gone = runyard("tasks", "show", task_id, env=api_env)
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")


def test_keys_create_ls_revoke(served: Served) -> None:
    db = {"RUNYARD_DATABASE_URL": served.db_url}
    made = runyard("keys", "create", "--name", "ci", "--scope", "read", "--json", env=db)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    listed = json.loads(runyard("keys", "ls", "--json", env=db).stdout)["items"]
    assert {"id": key["id"], "name": "ci", "scopes": ["read"]}.items() <= next(
        k for k in listed if k["id"] == key["id"]
    ).items()
    with Client(served.url, key["key"]) as client:
        client.list_runs(limit=1)
        human = runyard("runs", "ls", "--url", served.url, "--api-key", key["key"])
        assert human.returncode == 0, human.stderr
        revoked = runyard("keys", "revoke", key["id"], env=db)
        assert revoked.returncode == 0 and key["id"] in revoked.stdout
        try:
            client.list_runs(limit=1)
        except Unauthorized:
            pass
        else:
            raise AssertionError("a revoked key still works")
    refused = runyard("runs", "ls", "--url", served.url, "--api-key", key["key"])
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and len(refused.stderr.strip().splitlines()) == 1
    table = runyard("keys", "ls", env=db)
    assert key["id"] in table.stdout


def test_errors_are_one_line_and_non_zero(served: Served, api_env: dict[str, str]) -> None:
    unknown = runyard("run", "no_such_workflow", "--input", "{}", env=api_env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: ") and "no_such_workflow" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1

    bad_json = runyard("run", "enrich_companies", "--input", "{domain: acme}", env=api_env)
    assert bad_json.returncode == 2
    assert bad_json.stderr.startswith("error: --input is not valid JSON")
    assert len(bad_json.stderr.strip().splitlines()) == 1

    invalid = runyard("run", "enrich_companies", "--input", '{"domain": 5}', env=api_env)
    assert invalid.returncode == 1 and "input.domain" in invalid.stderr

    down = runyard("runs", "ls", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "k")
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the Runyard server at http://127.0.0.1:")
    assert len(down.stderr.strip().splitlines()) == 1

    missing = runyard("runs", "show", "no-such-run", env=api_env)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")


def _serves_on(port: int, db_url: str, *args: str, **env: str) -> bool:
    """Whether ``runyard server ARGS`` (with ``env``) answers /healthz on ``port``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "server", *args, "--log-level", "warning"],
        env=cli_env(RUNYARD_DATABASE_URL=db_url, **env),
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answer() -> int | NotYet:
        if proc.poll() is not None:
            return -1  # (exited: it never will)
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
        except httpx.TransportError as exc:
            return NotYet(exc)

    try:
        return wait_until(answer, timeout=30, interval=0.1, what=f"an answer on {port}") == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_server_takes_host_and_port_from_the_environment(db_url: str) -> None:
    port = free_port()
    assert _serves_on(port, db_url, RUNYARD_HOST="127.0.0.1", RUNYARD_PORT=str(port))
    # A flag wins over the variable.
    flag_port, env_port = free_port(), free_port()
    assert _serves_on(flag_port, db_url, "--port", str(flag_port), RUNYARD_PORT=str(env_port))
    assert "RUNYARD_PORT" in runyard("server", "--help").stdout


def test_runs_queue_explains_history() -> None:
    shown = " ".join(runyard("runs", "queue", "--help").stdout.replace("│", " ").split())
    assert "--history" in shown
    assert "queued and processing" in shown and "completed, failed" in shown
