"""Callbacks through the front doors (both backends): a real server and worker process,
``POST /v1/runs`` with ``callback``, the SDK's deliveries and redeliver (sync and async),
``runyard runs deliveries`` and ``runyard webhook-secret rotate``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks import Webhook

from runyard.client import AsyncClient, Client
from runyard.schemas import DeliveryOut
from tests.callbacks.receiver import Receiver
from tests.cli.conftest import runyard
from tests.client.support import Served, serve
from tests.conftest import BACKENDS
from tests.waiting import NotYet, wait_until

ENV = {
    "RUNYARD_OUTBOUND_ALLOW": "127.0.0.0/8",
    "RUNYARD_CALLBACK_RETRY_SCALE": "0.02",
    "RUNYARD_WEBHOOK_SECRET_TTL_S": "0.2",
}


@pytest.fixture(params=BACKENDS, scope="module")
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    """One server and worker per backend for the module's tests (each test its own runs
    and receiver)."""
    folder = tmp_path_factory.mktemp(f"served-{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        mp.delenv("RUNYARD_WEBHOOK_SECRET", raising=False)
        with serve(
            str(request.param), folder, pg_template, "tests.apps.callbacks_app:yard", {"emitter"}
        ) as s:
            yield s


def _all_delivered(client: Client, run_id: str) -> list[DeliveryOut] | NotYet:
    ds = client.list_deliveries(run_id)
    ok = ds and any(d.kind == "finished" for d in ds) and all(d.state == "delivered" for d in ds)
    return ds if ok else NotYet([(d.kind, d.state) for d in ds])


def test_front_doors(served: Served) -> None:
    receiver = Receiver().start()
    env = {"RUNYARD_URL": served.url, "RUNYARD_API_KEY": served.api_key}
    try:
        with httpx.Client(base_url=served.url, headers={"x-api-key": served.api_key}) as http:
            bad = http.post(
                "/v1/runs",
                json={"workflow": "emitter", "input": {}, "callback": {"url": "http://10.1.2.3/"}},
            )
            assert bad.status_code == 422, bad.text
            assert "callback.url" in json.dumps(bad.json()["error"])
            assert http.get("/v1/runs/run_nope/deliveries").status_code == 404
        with Client(served.url, api_key=served.api_key) as client:
            run = client.start_run(
                "emitter",
                {"count": 2, "tag": "x"},
                custom_data={"order": 7},
                callback={"url": receiver.url(), "headers": {"x-k": "v"}},
            )
            ds = wait_until(
                lambda: _all_delivered(client, run.id), timeout=20, what="messages delivered"
            )
            assert all(d.attempts[0].status_code == 200 for d in ds)
            before = len(receiver.snapshot())
            again = client.redeliver(run.id, ds[0].id)
            assert again.id == ds[0].id
            wait_until(
                lambda: len(receiver.snapshot()) > before or NotYet(before),
                timeout=10,
                what="redelivered",
            )
            assert receiver.snapshot()[-1].headers["webhook-id"] == ds[0].message_id

        async def via_async() -> list[DeliveryOut]:
            async with AsyncClient(served.url, api_key=served.api_key) as aclient:
                return await aclient.list_deliveries(run.id)

        assert {d.message_id for d in asyncio.run(via_async())} == {d.message_id for d in ds}

        out = runyard("runs", "deliveries", run.id, "--json", env=env)
        assert out.returncode == 0, out.stderr
        listed = json.loads(out.stdout)["items"]
        assert {d["message_id"] for d in listed} == {d.message_id for d in ds}

        db = {"RUNYARD_DATABASE_URL": served.db_url}
        old = json.loads(runyard("webhook-secret", "show", "--json", env=db).stdout)["secrets"]
        rotated = runyard("webhook-secret", "rotate", "--json", env=db)
        assert rotated.returncode == 0, rotated.stderr
        new = json.loads(rotated.stdout)["secret"]
        assert new.startswith("whsec_") and new not in old
        with Client(served.url, api_key=served.api_key) as client:
            run2 = client.start_run("emitter", {"count": 1}, callback={"url": receiver.url()})
            wait_until(lambda: _all_delivered(client, run2.id), timeout=20, what="delivered")
        got = [r for r in receiver.snapshot() if json.loads(r.body)["run_id"] == run2.id]
        assert got
        for r in got:  # signed with both: receivers on either secret verify
            assert len(r.headers["webhook-signature"].split()) == 2
            for secret in (old[0], new):
                assert Webhook(secret).verify(r.body, r.headers)["custom_data"] is None
    finally:
        receiver.stop()


def test_a_task_carries_its_callback(served: Served) -> None:
    """A task's saved options include ``callback`` (checked by the guard when saved and
    changed, 422 naming options.callback.url); each execution's run reports to it, unless
    the execution gives its own."""
    receiver = Receiver().start()
    try:
        with httpx.Client(base_url=served.url, headers={"x-api-key": served.api_key}) as http:
            for bad_url in ("http://10.1.2.3/", "http://[::1]:9/x", "ftp://example.com/"):
                bad = http.post(
                    "/v1/tasks",
                    json={"workflow": "emitter", "options": {"callback": {"url": bad_url}}},
                )
                assert bad.status_code == 422, bad.text
                assert "options.callback.url" in json.dumps(bad.json()["error"]), bad.text
            callback = {"url": receiver.url("/task"), "headers": {"x-task": "t1"}}
            made = http.post(
                "/v1/tasks",
                json={
                    "workflow": "emitter",
                    "input": {"count": 2, "tag": "t"},
                    "options": {"callback": callback, "priority": 3},
                },
            )
            assert made.status_code == 201, made.text
            task_id = made.json()["id"]
            assert made.json()["options"]["callback"] == callback
            assert http.get(f"/v1/tasks/{task_id}").json()["options"]["callback"] == callback
            patched = http.patch(
                f"/v1/tasks/{task_id}",
                json={"options": {"callback": {"url": "http://169.254.169.254/latest"}}},
            )
            assert patched.status_code == 422, patched.text
            assert "options.callback.url" in json.dumps(patched.json()["error"])
            assert http.get(f"/v1/tasks/{task_id}").json()["options"]["callback"] == callback
            executed = http.post(f"/v1/tasks/{task_id}/execute", json={})
            assert executed.status_code in (200, 201, 202), executed.text
            run_id = executed.json()["id"]
            other = http.post(
                f"/v1/tasks/{task_id}/execute",
                json={"callback": {"url": receiver.url("/other")}, "input": {"count": 1}},
            )
            assert other.status_code in (200, 201, 202), other.text
            other_id = other.json()["id"]
            # A schedule of the task without a callback of its own: its fires report to
            # the task's.
            made = http.post("/v1/schedules", json={"task_id": task_id, "cron": "0 0 1 1 *"})
            assert made.status_code == 201, made.text
            fired = http.post(f"/v1/schedules/{made.json()['id']}/trigger", json={})
            assert fired.status_code in (200, 201), fired.text
            fire_id = fired.json()["run_id"]
        with Client(served.url, api_key=served.api_key) as client:
            wait_until(lambda: _all_delivered(client, run_id), timeout=20, what="delivered")
            wait_until(lambda: _all_delivered(client, other_id), timeout=20, what="delivered")
            wait_until(lambda: _all_delivered(client, fire_id), timeout=20, what="delivered")
        by_fire = [r for r in receiver.snapshot() if json.loads(r.body)["run_id"] == fire_id]
        assert by_fire and all(r.path == "/task" for r in by_fire)
        got = [r for r in receiver.snapshot() if json.loads(r.body)["run_id"] == run_id]
        assert got and all(r.path == "/task" and r.headers["x-task"] == "t1" for r in got)
        final = [r.json for r in got if r.json["type"] == "run.finished"]
        assert [f["result"] for f in final] == [{"emitted": 2, "tag": "t"}]
        outs = [
            o["data"]["n"]
            for r in got
            if r.json["type"] == "run.outputs"
            for o in r.json["outputs"]
        ]
        assert sorted(outs) == [0, 1]
        overridden = [r for r in receiver.snapshot() if json.loads(r.body)["run_id"] == other_id]
        assert overridden and all(r.path == "/other" for r in overridden)
        assert "x-task" not in overridden[0].headers
    finally:
        receiver.stop()
