"""A new user's first hour with the CLI, driven in subprocesses against a real server and
worker (``tests.cli.first_hour_app``) on both backends: waits that honour their timeout,
"did you mean", --live, --custom-data per input, logs --follow, --version and help, and
commands that refuse a database that is not there instead of creating one."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import psycopg
import pytest

from runyard.client import Client
from tests.cli.conftest import runyard
from tests.client.support import Served, cli_env, free_port, serve
from tests.conftest import BACKENDS, PG_ADMIN_URL, ROOT, _pg_url
from tests.waiting import NotYet, wait_until

APP = "tests.cli.first_hour_app:yard"
WORKFLOWS = {"approve_order", "dozer", "order_flow", "slow_talker"}


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"first-hour-{request.param}")
    with serve(str(request.param), folder, pg_template, APP, WORKFLOWS) as s:
        yield s


@pytest.fixture
def env(served: Served) -> dict[str, str]:
    return {"RUNYARD_URL": served.url, "RUNYARD_API_KEY": served.api_key}


def _waiting(client: Client, run_id: str) -> str | NotYet:
    status = client.get_status(run_id)
    return status.waiting_for or NotYet(status)


def _timed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = runyard(*args, env=env, timeout=60)
    return done, time.monotonic() - began


def test_every_wait_honours_its_timeout_and_says_what_the_run_waits_for(
    served: Served, env: dict[str, str]
) -> None:
    with Client(served.url, served.api_key) as client:
        asleep = client.start_run("dozer", 600).id
        waiting = client.start_run("slow_talker", f"go:{secrets.token_hex(4)}").id
        slept = wait_until(lambda: _waiting(client, asleep), timeout=30, what="asleep")
        assert slept == "sleep:nap"
        event = wait_until(lambda: _waiting(client, waiting), timeout=30, what="waiting")
    assert "go:" in event

    for run_id, what in ((asleep, "sleep:nap"), (waiting, event)):
        done, took = _timed("runs", "wait", run_id, "--timeout", "3", env=env)
        assert done.returncode == 124, done.stderr
        assert 3 <= took < 12, took  # (the interpreter's start included)
        assert f"error: run {run_id} is still RUNNING after 3s, waiting for {what}" in (done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 3  # progress line(s) and the error

    as_json, took = _timed("runs", "wait", asleep, "--timeout", "2", "--json", env=env)
    assert as_json.returncode == 124 and took < 12
    assert json.loads(as_json.stdout)["waiting_for"] == "sleep:nap"

    started, took = _timed(
        "run", "dozer", "--input", "600", "--wait", "--wait-timeout", "3", env=env
    )
    assert started.returncode == 124, started.stderr
    assert 3 <= took < 15, took
    assert re.search(r"error: run \S+ is still \w+ after 3s, waiting for sleep:nap", started.stderr)

    live, took = _timed(
        "run", "slow_talker", "--input", '"go:never"', "--live", "--wait-timeout", "2", env=env
    )
    assert live.returncode == 124, live.stderr
    assert took < 12, took
    assert re.search(r"still \w+ after 2s, waiting for event:go:never", live.stderr), live.stderr


def test_live_answers_with_the_result(served: Served, env: dict[str, str]) -> None:
    live = runyard(
        "run", "order_flow", "--input", '{"sku": "abc", "qty": 2}', "--live", "--json", env=env
    )
    assert live.returncode == 0, live.stderr
    run = json.loads(live.stdout)
    assert run["status"] == "SUCCEEDED" and run["mode"] == "live"
    assert run["result"] == {"sku": "abc", "custom_data": None}


def test_a_mistyped_workflow_gets_a_suggestion(served: Served, env: dict[str, str]) -> None:
    typo = runyard("run", "ordr_flow", "--input", "{}", env=env)
    assert typo.returncode == 1
    assert typo.stderr.startswith("error: no workflow 'ordr_flow' is registered")
    assert "did you mean order_flow?" in typo.stderr
    answer = httpx.post(
        served.url + "/v1/runs",
        headers={"Authorization": f"Bearer {served.api_key}"},
        json={"workflow": "order_flw", "input": {}},
    )
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "workflow_not_found"
    assert error["details"][0]["did_you_mean"] == ["order_flow"]
    shown = httpx.get(
        served.url + "/v1/workflows/dozr", headers={"x-api-key": served.api_key}
    ).json()
    assert shown["error"]["details"][0]["did_you_mean"] == ["dozer"]
    nothing_close = runyard("run", "zzzzzz", "--input", "{}", env=env)
    assert nothing_close.returncode == 1 and "did you mean" not in nothing_close.stderr


def test_custom_data_goes_with_every_input(served: Served, env: dict[str, str]) -> None:
    inputs = [
        {"sku": "abc", "qty": 2},
        {"input": {"sku": "def", "qty": 3}, "custom_data": {"own": True}},
        {"input": {"sku": "ghi", "qty": 4}},
    ]
    done = runyard(
        "run",
        "order_flow",
        "--inputs",
        json.dumps(inputs),
        "--custom-data",
        '{"team": "blue"}',
        "--wait",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["id"]
    shown = runyard("runs", "inputs", run_id, "--json", env=env)
    items = json.loads(shown.stdout)["items"]
    assert [i["custom_data"] for i in items] == [{"team": "blue"}, {"own": True}, {"team": "blue"}]
    assert [i["result"]["custom_data"] for i in items] == [
        {"team": "blue"},
        {"own": True},
        {"team": "blue"},
    ]
    one = runyard(
        "run",
        "order_flow",
        "--input",
        '{"sku": "xyz", "qty": 2}',
        "--custom-data",
        '{"team": "red"}',
        "--wait",
        "--json",
        env=env,
    )
    assert json.loads(one.stdout)["result"]["custom_data"] == {"team": "red"}, one.stderr


def test_runs_logs_follow_prints_lines_as_they_come(
    served: Served, env: dict[str, str], tmp_path: Path
) -> None:
    event = f"go:{secrets.token_hex(4)}"
    errors = tmp_path / "stderr"
    with Client(served.url, served.api_key) as client:
        run_id = client.start_run("slow_talker", event).id
        wait_until(lambda: _waiting(client, run_id), timeout=30, what="waiting")
        with open(errors, "w") as err:
            follower = subprocess.Popen(
                [sys.executable, "-m", "runyard", "runs", "logs", run_id, "--follow", "--json"],
                env=cli_env(**env),
                cwd=str(ROOT),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        lines: list[str] = []

        def read() -> None:
            assert follower.stdout is not None
            lines.extend(line.rstrip("\n") for line in follower.stdout)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: len(lines) >= 1, timeout=30, what="the first line printed")
            assert json.loads(lines[0])["message"] == "before the event"
            assert follower.poll() is None  # the run has not ended: it keeps following
            client.notify(event, {"n": 7})
            assert follower.wait(30) == 0, errors.read_text()
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait(10)
            reader.join(10)
            assert follower.stdout is not None
            follower.stdout.close()
    assert [json.loads(line)["message"] for line in lines] == [
        "before the event",
        "after the event: {'n': 7}",
    ]


def test_version_and_help_without_type_noise() -> None:
    shown = runyard("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"runyard {version('runyard')}"
    for args in (["--help"], ["run", "--help"], ["runs", "logs", "--help"], ["db", "--help"]):
        helped = runyard(*args)
        assert helped.returncode == 0, helped.stderr
        assert "<bool>" not in helped.stdout, (args, helped.stdout)
    run_help = runyard("run", "--help").stdout
    assert "--live" in run_help and "--wait-timeout" in run_help
    # What it advertises exists: signed callbacks (docs/callbacks.md) and HTTP targets.
    assert "--callback" in run_help and "--target" in run_help
    assert "--follow" in runyard("runs", "logs", "--help").stdout


# -- databases -------------------------------------------------------------------------------


def _in(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``runyard ARGS`` run from ``folder`` (RUNYARD_DATABASE_URL unset unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args],
        env=cli_env(**env),
        cwd=str(folder),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_commands_refuse_a_missing_sqlite_database_and_never_create_one(tmp_path: Path) -> None:
    expected = tmp_path / ".runyard" / "runyard.db"
    for args in (
        ["keys", "create"],
        ["keys", "ls"],
        ["db", "purge"],
        ["worker", APP],
        ["server", "--port", str(free_port())],
    ):
        refused = _in(tmp_path, *args)
        assert refused.returncode == 1, (args, refused.stderr)
        assert f"error: no Runyard database at {expected}" in refused.stderr, refused.stderr
        assert "runyard db upgrade" in refused.stderr
        assert f"database sqlite:///.runyard/runyard.db ({expected})" in refused.stderr
        assert not expected.exists() and not (tmp_path / "runyard.db").exists(), args

    upgraded = _in(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert str(expected) in upgraded.stderr
    assert expected.exists()
    assert (tmp_path / ".runyard" / ".gitignore").read_text().splitlines()[-1] == "*"
    made = _in(tmp_path, "keys", "create", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["key"].startswith("ry_")


@pytest.fixture
def empty_pg_database(pg_template: str | None) -> Iterator[str]:
    """A PostgreSQL database that exists, with no Runyard schema."""
    if pg_template is None:
        pytest.skip("RUNYARD_TEST_BACKENDS leaves PostgreSQL out on purpose")
    name = f"runyard_t_{secrets.token_hex(5)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_postgresql_database_without_schema_is_new_and_passwords_are_hidden(
    tmp_path: Path, empty_pg_database: str
) -> None:
    # (The test server trusts local connections: the password is there to be hidden.)
    url = _pg_url(empty_pg_database).replace("://postgres@", "://postgres:s3cret-pw@")
    assert "s3cret-pw" in url
    for args in (["keys", "create"], ["worker", APP], ["server", "--port", str(free_port())]):
        refused = _in(tmp_path, *args, RUNYARD_DATABASE_URL=url)
        assert refused.returncode == 1, (args, refused.stderr)
        assert "has no Runyard schema" in refused.stderr and "runyard db upgrade" in refused.stderr
        assert "postgres:***@" in refused.stderr and "s3cret-pw" not in refused.stderr
    upgraded = _in(tmp_path, "db", "upgrade", RUNYARD_DATABASE_URL=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "s3cret-pw" not in upgraded.stderr + upgraded.stdout
    listed = _in(tmp_path, "keys", "ls", "--json", RUNYARD_DATABASE_URL=url)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"items": []}
    assert not os.listdir(tmp_path)  # nothing written locally for a PostgreSQL database


def test_db_purge_refuses_days_that_are_not_positive(tmp_path: Path) -> None:
    assert _in(tmp_path, "db", "upgrade").returncode == 0
    for days in ("0", "-1", "nan"):
        refused = _in(tmp_path, "db", "purge", "--days", days)
        assert refused.returncode == 2, (days, refused.stderr)
        assert "--days" in refused.stderr and "positive number of days" in refused.stderr
    purged = _in(tmp_path, "db", "purge", "--days", "0.5", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout) == {"purged": 0, "older_than_days": 0.5}
