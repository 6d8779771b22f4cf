"""Live mode: the HTTP call waits for the run (200 with its result and first outputs),
answers 202 past ``wait_timeout``, and 429 with ``Retry-After`` when the server's live
capacity or the workflow's flow control is exhausted, writing nothing then."""

from __future__ import annotations

import concurrent.futures
import time
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
from tests.waiting import NotYet, wait_until


def test_live_mode(
    db_url: str,
    tmp_path: Path,
    server_factory: ServerFactory,
    api_keys: Keys,
    worker_procs: list[WorkerProcess],
) -> None:
    server = server_factory(RUNYARD_LIVE_CAPACITY="1")
    start_worker(worker_procs, db_url, tmp_path)
    with client(server, api_keys.write) as api:
        wait_published(api, "greet", "emitter", "sleeper", "exclusive", "waiter")

        r = api.post(
            "/v1/runs",
            json={"workflow": "greet", "input": {"name": "liv", "times": 2}, "mode": "live"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["run"]["status"] == "SUCCEEDED" and body["run"]["mode"] == "live"
        assert body["run"]["result"] == {"greeting": "hello liv", "times": 2}
        assert [o["data"]["i"] for o in body["outputs"]] == [0, 1]
        assert body["next_cursor"] is None and "x-pagination-next" not in r.headers

        # More outputs than a page: the rest through /outputs from the cursor.
        r = api.post("/v1/runs", json={"workflow": "emitter", "input": 130, "mode": "live"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["outputs"]) == 100
        cursor = r.headers["x-pagination-next"]
        assert cursor == body["next_cursor"]
        rest = api.get(f"/v1/runs/{body['run']['id']}/outputs", params={"cursor": cursor})
        assert [o["data"]["i"] for o in body["outputs"] + rest.json()["items"]] == list(range(130))

        # Past wait_timeout: 202 and the run goes on.
        started = time.monotonic()
        r = api.post(
            "/v1/runs",
            json={"workflow": "sleeper", "input": 30, "mode": "live", "wait_timeout": 0.3},
        )
        assert r.status_code == 202, r.text
        assert time.monotonic() - started < 1.5
        assert r.json()["terminal"] is False and r.json()["status"] in ("QUEUED", "RUNNING")
        assert r.headers["location"] == f"/v1/runs/{r.json()['id']}"
        wait_status(api, r.json()["id"], "RUNNING")
        assert api.post(f"/v1/runs/{r.json()['id']}/cancel").status_code == 200

        # Live capacity 1: while one live call waits, the next is refused before writing.
        with (
            concurrent.futures.ThreadPoolExecutor(1) as pool,
            client(server, api_keys.write) as other,
        ):
            holder = pool.submit(
                other.post,
                "/v1/runs",
                json={"workflow": "waiter", "input": "hold", "mode": "live", "run_id": "holder"},
            )
            wait_status(api, "holder", "RUNNING")
            refused = {
                "workflow": "greet",
                "input": {"name": "x"},
                "mode": "live",
                "run_id": "no-1",
            }
            r = api.post("/v1/runs", json=refused)
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "capacity_exceeded"
            assert api.get("/v1/runs/no-1").status_code == 404  # nothing was written
            long_poll = api.get("/v1/runs/holder/result", params={"timeout": 5})
            assert long_poll.status_code == 429
            # Async mode is not a live wait: still accepted.
            r = api.post("/v1/runs", json={"workflow": "greet", "input": {"name": "a"}})
            assert r.status_code == 201
            wait_until(
                lambda: api.post("/v1/events/hold", json={"data": 1}).json()["woken"] == ["holder"],
                timeout=20,
                what="the holder woken by hold",
            )
            assert holder.result(30).status_code == 200
        r = api.post("/v1/runs", json=refused)
        assert r.status_code == 200  # capacity is back

        # Flow control: `exclusive` allows one at a time; a live call for it is refused
        # while one runs (nothing written), accepted again once it is done.
        busy = api.post("/v1/runs", json={"workflow": "exclusive", "input": 30}).json()["id"]
        wait_status(api, busy, "RUNNING")
        fc = {"workflow": "exclusive", "input": 0.1, "mode": "live", "run_id": "fc-1"}
        r = api.post("/v1/runs", json=fc)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["details"]["flow_key"] == "server-tests-one-at-a-time"
        assert int(r.headers["retry-after"]) >= 1
        assert api.get("/v1/runs/fc-1").status_code == 404
        assert api.post(f"/v1/runs/{busy}/cancel").status_code == 200

        def accepted() -> httpx.Response | NotYet:
            r = api.post("/v1/runs", json=fc)
            return r if r.status_code != 429 else NotYet(r.json())

        # The slot frees once the worker lets go.
        r = wait_until(accepted, timeout=20, interval=0.1, what="fc-1 accepted")
        assert r.status_code == 200 and r.json()["run"]["result"] == 0.1
