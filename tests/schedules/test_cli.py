"""``runyard schedules ls|show|create|update|pause|resume|trigger|backfill|delete`` against
a real server and worker, on both backends: tables for people, ``--json`` for scripts,
one-line errors. The commands run in this process (typer's runner: each in a process of
its own would spend most of the test importing); the errors go through the real
``runyard`` entry point in a process of its own, as a user sees them."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from typer.testing import CliRunner

from runyard.cli import app
from tests.cli.conftest import runyard
from tests.client.support import Served
from tests.schedules.conftest import api, wait_run


def _env(served: Served) -> dict[str, str]:
    return {"RUNYARD_URL": served.url, "RUNYARD_API_KEY": served.api_key}


def _text(served: Served, *args: str) -> str:
    done = CliRunner().invoke(app, ["schedules", *args], env=_env(served))
    assert done.exit_code == 0, (done.output, done.exception)
    return done.stdout


def _json(served: Served, *args: str) -> Any:
    return json.loads(_text(served, *args, "--json"))


def test_schedules_commands(served: Served) -> None:
    sid = f"cli-{secrets.token_hex(4)}"
    created = _json(
        served,
        "create",
        "--id",
        sid,
        "--workflow",
        "greet",
        "--input",
        '{"name": "cli"}',
        "--cron",
        "0 9 * * 1-5",
        "--tz",
        "Europe/Paris",
        "--overlap",
        "buffer_one",
        "--catchup-window",
        "120",
        "--options",
        '{"retries": 2}',
    )
    assert (created["id"], created["overlap"], created["catchup_window"]) == (
        sid,
        "buffer_one",
        120.0,
    )
    assert created["options"] == {"retries": 2} and len(created["next_fires"]) == 10

    shown = _text(served, "show", sid)
    assert "At 09:00, Monday through Friday" in shown
    assert "0 9 * * 1-5 (Europe/Paris)" in shown and "next fires" in shown
    listed = _text(served, "ls")
    assert sid in listed and "active" in listed
    assert sid in [s["id"] for s in _json(served, "ls")["items"]]

    updated = _json(served, "update", sid, "--cron", "0 * * * *", "--tz", "UTC", "--jitter", "1")
    assert (updated["cron"], updated["timezone"], updated["jitter"]) == ("0 * * * *", "UTC", 1.0)
    assert "paused schedule" in _text(served, "pause", sid, "--note", "for the test")
    paused = _json(served, "show", sid)
    assert (paused["paused"], paused["note"]) == (True, "for the test")
    assert "paused" in _text(served, "ls")
    assert _json(served, "resume", sid)["paused"] is False

    fire = _json(served, "trigger", sid)
    assert fire["kind"] == "trigger" and fire["run_id"]
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = (top - timedelta(hours=2)).isoformat(), top.isoformat()
    done = _json(served, "backfill", sid, "--start", start, "--end", end)
    assert (done["created"], done["existing"]) == (2, 0)
    again = _text(served, "backfill", sid, "--start", start, "--end", end)
    assert "0 started, 2 already started before" in again
    with api(served) as client:
        for f in [fire, *done["fires"]]:
            wait_run(client, f["run_id"])
    recent = _text(served, "show", sid)
    assert fire["run_id"] in recent and "SUCCEEDED" in recent

    assert f"deleted schedule {sid}" in _text(served, "delete", sid)
    gone = runyard("schedules", "show", sid, env=_env(served))
    assert gone.returncode == 1 and gone.stderr.startswith("error:"), gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1


def test_schedules_errors_name_the_field(served: Served) -> None:
    bad = runyard(
        "schedules",
        "create",
        "--workflow",
        "greet",
        "--cron",
        "0 9 * * *",
        "--tz",
        "Nowhere/Else",
        env=_env(served),
    )
    assert bad.returncode == 1 and "timezone" in bad.stderr, bad.stderr
    wrong = runyard("schedules", "trigger", "x", "--overlap", "sometimes", env=_env(served))
    assert wrong.returncode == 2 and "--overlap" in wrong.stderr, wrong.stderr
