"""Steering runs over HTTP: cancel (one, by prefix, by workflow, all), pause, resume,
continue and fork, with 404 and 409 where they apply."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import WorkerProcess
from tests.server.conftest import (
    Keys,
    ServerFactory,
    client,
    start_worker,
    wait_published,
    wait_status,
)
from tests.waiting import wait_until


def _start(api: httpx.Client, workflow: str, input: object, run_id: str | None = None) -> str:
    body: dict[str, object] = {"workflow": workflow, "input": input}
    if run_id:
        body["run_id"] = run_id
    r = api.post("/v1/runs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_cancel_one_many_and_all(
    db_url: str,
    tmp_path: Path,
    server_factory: ServerFactory,
    api_keys: Keys,
    worker_procs: list[WorkerProcess],
) -> None:
    server = server_factory()
    start_worker(worker_procs, db_url, tmp_path)
    with client(server, api_keys.write) as api, client(server, api_keys.admin) as admin:
        wait_published(api, "waiter", "sleeper")
        one = _start(api, "sleeper", 30)
        wait_status(api, one, "RUNNING")
        r = api.post(f"/v1/runs/{one}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "CANCELED"
        again = api.post(f"/v1/runs/{one}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "illegal_transition"
        assert api.post("/v1/runs/nope-1/cancel").json()["error"]["code"] == "run_not_found"
        assert api.post("/v1/runs/nope-1/cancel").status_code == 404

        batch = [_start(api, "waiter", f"e{i}", f"batch-a-{i}") for i in range(3)]
        other = _start(api, "waiter", "e9", "batch-b-1")
        sleepers = [_start(api, "sleeper", 30) for _ in range(2)]
        r = api.post("/v1/runs/cancel", json={"prefix": "batch-a-"})
        assert r.status_code == 200 and sorted(r.json()["canceled"]) == batch
        r = api.post("/v1/runs/cancel", json={"workflow": "sleeper"})
        assert sorted(r.json()["canceled"]) == sorted(sleepers)
        for run_id in [*batch, *sleepers]:
            assert api.get(f"/v1/runs/{run_id}/status").json()["status"] == "CANCELED"
        assert api.get(f"/v1/runs/{other}/status").json()["status"] in ("QUEUED", "RUNNING")

        # Every run at once needs the admin scope; url_prefix selects HTTP-target runs
        # only (tests/http_targets), so a workflow's run is left alone.
        refused = api.post("/v1/runs/cancel", json={"all": True})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert api.get(f"/v1/runs/{other}/status").json()["status"] in ("QUEUED", "RUNNING")
        r = api.post("/v1/runs/cancel", json={"url_prefix": "https://x"})
        assert r.status_code == 200 and r.json()["canceled"] == []
        assert api.post("/v1/runs/cancel", json={}).status_code == 422
        r = admin.post("/v1/runs/cancel", json={"all": True})
        assert r.status_code == 200 and r.json()["canceled"] == [other]


def test_pause_resume_continue_and_fork(
    db_url: str,
    tmp_path: Path,
    server_factory: ServerFactory,
    api_keys: Keys,
    worker_procs: list[WorkerProcess],
) -> None:
    server = server_factory()
    start_worker(worker_procs, db_url, tmp_path)
    flag = tmp_path / "flag"
    with client(server, api_keys.write) as api:
        wait_published(api, "gated", "counter", "waiter", "greet")

        # resume: a FAILED run continues from its last checkpoint once the cause is gone.
        gated = _start(api, "gated", str(flag))
        wait_status(api, gated, "FAILED")
        steps = api.get(f"/v1/runs/{gated}/steps").json()["items"]
        assert [(s["name"], s["status"]) for s in steps] == [("check", "failed")]
        assert "does not exist" in str(steps[0]["error"])
        flag.write_text("ok")
        r = api.post(f"/v1/runs/{gated}/resume")
        assert r.status_code == 200 and r.json()["status"] == "QUEUED"
        wait_status(api, gated, "SUCCEEDED")
        assert api.post(f"/v1/runs/{gated}/resume").status_code == 409

        # continue: the next iteration of a finished incremental run.
        counter = api.post(
            "/v1/runs", json={"workflow": "counter", "sync_mode": "incremental"}
        ).json()["id"]
        wait_status(api, counter, "SUCCEEDED")
        assert api.get(f"/v1/runs/{counter}").json()["result"] == 1
        r = api.post(f"/v1/runs/{counter}/continue")
        assert r.status_code == 200 and r.json()["iteration"] == 2
        wait_status(api, counter, "SUCCEEDED")
        run = api.get(f"/v1/runs/{counter}").json()
        assert run["result"] == 2 and run["iteration"] == 2
        outputs = api.get(f"/v1/runs/{counter}/outputs").json()["items"]
        assert [(o["iteration"], o["data"]) for o in outputs] == [(1, {"n": 1}), (2, {"n": 2})]

        # pause a run waiting for an event, resume it, and let the event finish it.
        waiting = _start(api, "waiter", "pause-me")
        wait_status(api, waiting, "RUNNING")
        wait_until(
            lambda: api.get("/v1/events/pause-me/waiters").json()["items"],
            timeout=20,
            what="a waiter of pause-me",
        )
        r = api.post(f"/v1/runs/{waiting}/pause")
        assert r.status_code == 200 and r.json()["status"] == "PAUSED"
        assert api.post(f"/v1/runs/{waiting}/pause").status_code == 409
        assert api.post(f"/v1/runs/{waiting}/continue").status_code == 409
        # (The engine shows the resumed run QUEUED while its item still waits for the
        # event; RUNNING with waiting_for would be exact. Reported.)
        assert api.post(f"/v1/runs/{waiting}/resume").json()["status"] in ("QUEUED", "RUNNING")
        wait_until(  # (notified again until the resumed run waits once more)
            lambda: api.post("/v1/events/pause-me", json={"data": 7}).json()["woken"] == [waiting],
            timeout=20,
            what="the resumed run woken by pause-me",
        )
        wait_status(api, waiting, "SUCCEEDED")
        assert api.get(f"/v1/runs/{waiting}").json()["result"] == 7

        # fork: a new run from a recorded step, with a new input.
        greet = _start(api, "greet", {"name": "ann"})
        wait_status(api, greet, "SUCCEEDED")
        r = api.post(
            f"/v1/runs/{greet}/fork",
            json={"from_step": "compose", "input": {"name": "bob"}, "run_id": "forked-1"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["parent_id"] == greet
        wait_status(api, "forked-1", "SUCCEEDED")
        assert api.get("/v1/runs/forked-1").json()["result"]["greeting"] == "hello bob"
        assert (
            api.post(
                f"/v1/runs/{greet}/fork", json={"from_step": 1, "run_id": "forked-1"}
            ).status_code
            == 200
        )
        bad = api.post(f"/v1/runs/{greet}/fork", json={"from_step": 1, "input": {"name": ""}})
        assert bad.status_code == 422
        assert api.post("/v1/runs/nope-2/fork", json={"from_step": 1}).status_code == 404
        # Refusals name their field, and leave no run behind.
        for body, status, field in (
            ({"from_step": 99}, 422, "from_step"),
            ({"from_step": 0}, 422, "from_step"),
            ({"from_step": "no-such-step"}, 422, "from_step"),
            ({"from_step": 1, "version": "no-such-version"}, 404, "version"),
            ({"from_step": 1, "input": {"name": 5}}, 422, "input.name"),
        ):
            r = api.post(f"/v1/runs/{greet}/fork", json={**body, "run_id": "refused-fork"})
            assert r.status_code == status, (body, r.text)
            assert field in [d["field"] for d in r.json()["error"]["details"]], r.text
        assert api.get("/v1/runs/refused-fork").status_code == 404
