"""Callbacks through the front doors (both backends): a real server and worker process,
``POST /v1/runs`` with ``callback``, the SDK's deliveries and redeliver (sync and async),
``runyard runs deliveries`` and ``runyard webhook-secret rotate``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path: Path, pg_template: str | None
) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        mp.delenv("RUNYARD_WEBHOOK_SECRET", raising=False)
        with serve(
            str(request.param), tmp_path, pg_template, "tests.apps.callbacks_app:yard", {"emitter"}
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
