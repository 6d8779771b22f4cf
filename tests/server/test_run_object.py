"""The run object and its reads, over a real server and real workers on both backends:
credits by action beside their total, the sole input, ``run_time``, ``/v1/usage`` of one
run, ``GET /v1/runs/{id}/transitions`` (HTTP, SDK, CLI), and ``max_results`` enforced in
the store across inputs and worker processes emitting at once."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from runyard.client import Client
from tests.cli.conftest import runyard
from tests.client.support import Served, serve
from tests.conftest import BACKENDS, WorkerProcess, raw_sql
from tests.waiting import wait_until

APP = "tests.apps.run_object_app:yard"


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    """A server, and two worker processes (so that emits of one run race across
    processes), on a fresh database of each backend."""
    folder = tmp_path_factory.mktemp(f"run-object-{request.param}")
    with serve(str(request.param), folder, pg_template, APP, {"billed", "bounded", "held"}) as s:
        second = WorkerProcess(APP, s.db_url, concurrency=16, log=folder / "worker2.log")
        second.start()
        try:
            yield s
        finally:
            second.terminate(timeout=15)


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    with Client(served.url, served.api_key, timeout=30) as c:
        yield c


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    headers = {"x-api-key": served.api_key}
    with httpx.Client(base_url=served.url, headers=headers, timeout=30) as c:
        yield c


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def env(served: Served) -> dict[str, str]:
    return {"RUNYARD_URL": served.url, "RUNYARD_API_KEY": served.api_key}


def test_transitions_over_http_sdk_and_cli(
    served: Served, client: Client, api: httpx.Client
) -> None:
    run = client.start_run("billed", {"id": 1}, run_id=uid("tr"))
    done = client.wait_for_completion(run.id, timeout=60)
    assert done.status == "SUCCEEDED"

    r = api.get(f"/v1/runs/{run.id}/transitions")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(t["from_status"], t["to_status"]) for t in items] == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    times = [datetime.fromisoformat(t["at"]) for t in items]
    assert times == sorted(times)
    assert done.finished_at is not None  # the end's transition is written with the end
    assert abs((times[-1] - done.finished_at).total_seconds()) < 1

    sdk = client.transitions(run.id)
    assert [(t.from_status, t.to_status) for t in sdk] == [
        (t["from_status"], t["to_status"]) for t in items
    ]
    assert [t.at for t in sdk] == times

    out = runyard("runs", "transitions", run.id, "--json", env=env(served))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"] == items
    table = runyard("runs", "transitions", run.id, env=env(served))
    assert table.returncode == 0, table.stderr
    assert "QUEUED" in table.stdout and "RUNNING" in table.stdout
    assert "SUCCEEDED" in table.stdout

    missing = api.get("/v1/runs/no-such-run/transitions")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "run_not_found"
    gone = runyard("runs", "transitions", "no-such-run", env=env(served))
    assert gone.returncode != 0 and "no-such-run" in gone.stdout + gone.stderr


def test_run_object_credits_by_action_input_and_run_time(
    served: Served, client: Client, api: httpx.Client
) -> None:
    one = client.start_run("billed", {"id": 7}, run_id=uid("one"))
    many = client.start_run("billed", inputs=[{"id": 1}, {"id": 2}], run_id=uid("many"))
    client.wait_for_completion(one.id, timeout=60)
    client.wait_for_completion(many.id, timeout=60)

    body = api.get(f"/v1/runs/{one.id}").json()
    assert body["credits"] == 4.0
    assert body["credits_by_action"] == {"search": 2.0, "enrich": 2.0}
    assert body["input"] == {"id": 7}
    started = datetime.fromisoformat(body["started_at"])
    finished = datetime.fromisoformat(body["finished_at"])
    assert body["run_time"] == pytest.approx((finished - started).total_seconds(), abs=1e-5)
    assert body["truncated"] is False

    sdk = client.get_run(many.id)
    assert sdk.credits == 8.0 and sdk.credits_by_action == {"search": 4.0, "enrich": 4.0}
    assert sdk.input is None  # two inputs: each one's is in /inputs
    assert [i["input"] for i in api.get(f"/v1/runs/{many.id}/inputs").json()["items"]] == [
        {"id": 1},
        {"id": 2},
    ]

    # A list page carries the same object (the sole inputs read once for the page).
    listed = {
        r["id"]: r for r in api.get("/v1/runs", params={"workflow": "billed"}).json()["items"]
    }
    assert listed[one.id]["input"] == {"id": 7}
    assert listed[one.id]["credits_by_action"] == {"search": 2.0, "enrich": 2.0}
    assert listed[many.id]["input"] is None

    shown = runyard("runs", "show", one.id, env=env(served))
    assert shown.returncode == 0, shown.stderr
    assert "credits by action" in shown.stdout and "enrich 2" in shown.stdout
    assert "search 2" in shown.stdout and "run time" in shown.stdout

    # While it runs, run_time grows; before it starts, it is null.
    event = uid("gate")
    running = client.start_run("held", event, run_id=uid("held"))
    wait_until(lambda: client.get_run(running.id).status == "RUNNING", timeout=30, what="RUNNING")
    first = client.get_run(running.id).run_time
    assert first is not None and first >= 0
    wait_until(
        lambda: (client.get_run(running.id).run_time or 0) > first,
        timeout=10,
        what="run_time to grow while the run runs",
    )
    later = client.start_run("held", event, run_id=uid("later"), delay=3600)
    assert client.get_run(later.id).run_time is None
    client.notify(event, "go")
    assert client.wait_for_completion(running.id, timeout=60).status == "SUCCEEDED"
    client.cancel(later.id)


def test_usage_of_one_run(served: Served, client: Client, api: httpx.Client) -> None:
    a = client.start_run("billed", {"id": "a"}, run_id=uid("ua"))
    b = client.start_run("billed", inputs=[{"id": 1}, {"id": 2}, {"id": 3}], run_id=uid("ub"))
    client.wait_for_completion(a.id, timeout=60)
    client.wait_for_completion(b.id, timeout=60)

    r = api.get("/v1/usage", params={"run_id": a.id})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 4.0
    assert r.json()["by_action"] == {"search": 2.0, "enrich": 2.0}
    assert sum(row["charges"] for row in r.json()["rows"]) == 3

    sdk = client.usage(run_id=b.id)
    assert sdk.total == 12.0 and sdk.by_action == {"search": 6.0, "enrich": 6.0}
    everything = client.usage(workflow="billed")
    assert everything.total >= 16.0

    missing = api.get("/v1/usage", params={"run_id": "no-such-run"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "run_not_found"
    bad = api.get("/v1/usage", params={"run_id": "bad id!"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "run_id"


def test_max_results_is_enforced_across_inputs_and_workers(
    served: Served, client: Client, api: httpx.Client
) -> None:
    """Twelve inputs emit 20 records each, at once, in two worker processes; the run
    keeps exactly 25 and says the limit was reached. A continue starts a fresh count."""
    inputs = [20] * 12
    run = client.start_run("bounded", inputs=inputs, max_results=25, run_id=uid("cap"))
    done = client.wait_for_completion(run.id, timeout=120)
    assert done.status == "SUCCEEDED", done.error

    stored = raw_sql(served.db_url, "SELECT count(*) FROM outputs WHERE run_id = %s", (run.id,))
    assert stored[0][0] == 25
    results = [i["result"] for i in api.get(f"/v1/runs/{run.id}/inputs").json()["items"]]
    assert sum(r["stored"] for r in results) == 25  # what each emit answered, in total
    assert sum(r["refused"] for r in results) == 12 * 20 - 25
    body = api.get(f"/v1/runs/{run.id}").json()
    assert body["truncated"] is True and body["max_results"] == 25
    shown = runyard("runs", "show", run.id, env=env(served))
    assert "reached" in shown.stdout

    api.post(f"/v1/runs/{run.id}/continue").raise_for_status()
    again = client.wait_for_completion(run.id, timeout=120)
    assert again.iteration == 2 and again.status == "SUCCEEDED"
    second = raw_sql(
        served.db_url,
        "SELECT count(*) FROM outputs WHERE run_id = %s AND iteration = 2",
        (run.id,),
    )
    assert second[0][0] == 25

    # Under the limit: every emit is stored and the run is not marked.
    small = client.start_run("bounded", 5, max_results=10, run_id=uid("small"))
    finished = client.wait_for_completion(small.id, timeout=60)
    assert finished.result == {"stored": 5, "refused": 0}
    assert finished.truncated is False
