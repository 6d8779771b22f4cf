"""Issue 18, item 12: a run id given again. The same request answers with the run (as an
idempotent retry); the same id with another input, custom_data, workflow, mode or
option is refused with 409 ``run_id_conflict`` naming what differs, also when 50
triggers race (exactly one run, with the input of the one that won). Over a real HTTP
server, and through ``Runyard.start`` (the same service function), on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from runyard import Context, Runyard
from runyard.errors import IllegalTransition, RunIdConflict
from tests.conftest import raw_sql, running_worker
from tests.server.conftest import Keys, ServerFactory, client, publish_without_worker

N = 50


async def _post_all(url: str, key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Every body POSTed to /v1/runs at once (one connection each)."""
    async with httpx.AsyncClient(
        base_url=url,
        headers={"x-api-key": key},
        timeout=60,
        limits=httpx.Limits(max_connections=len(bodies)),
    ) as api:
        return list(await asyncio.gather(*(api.post("/v1/runs", json=b) for b in bodies)))


def test_the_same_request_again_answers_with_the_run_another_is_refused(
    db_url: str, server_factory: ServerFactory, api_keys: Keys
) -> None:
    publish_without_worker(db_url)
    server = server_factory()
    with client(server, api_keys.write) as api:
        body = {"workflow": "counter", "input": {"n": 1}, "run_id": "reuse-1"}
        first = api.post("/v1/runs", json=body)
        assert first.status_code == 201, first.text
        again = api.post("/v1/runs", json=dict(body))
        assert again.status_code == 200, again.text
        assert again.json()["id"] == "reuse-1"
        # Key order in the input is no difference.
        reordered = {"run_id": "reuse-1", "input": {"n": 1}, "workflow": "counter"}
        assert api.post("/v1/runs", json=reordered).status_code == 200

        for change, fields in (
            ({"input": {"n": 2}}, ["inputs"]),
            ({"custom_data": {"who": "x"}}, ["inputs"]),
            ({"workflow": "sleeper", "input": 0.1}, ["inputs", "workflow"]),
            ({"priority": 5}, ["priority"]),
            ({"retries": 3, "timeout": 30}, ["retries", "timeout"]),
        ):
            r = api.post("/v1/runs", json={**body, **change})
            assert r.status_code == 409, (change, r.text)
            error = r.json()["error"]
            assert error["code"] == "run_id_conflict"
            assert "reuse-1" in error["message"]
            assert [d["field"] for d in error["details"]] == fields, error
        detail = api.post("/v1/runs", json={**body, "priority": 5}).json()["error"]["details"]
        assert detail[0]["existing"] is None and detail[0]["requested"] == 5

        # The stored run kept the first request's input.
        assert api.get("/v1/runs/reuse-1").json()["input"] == {"n": 1}


@pytest.mark.parametrize("same", [False, True], ids=["other-inputs", "same-input"])
def test_fifty_concurrent_triggers_of_one_id(
    db_url: str, server_factory: ServerFactory, api_keys: Keys, same: bool
) -> None:
    publish_without_worker(db_url)
    server = server_factory()
    bodies = [
        {"workflow": "counter", "run_id": "race-1", "input": {"n": 0 if same else i}}
        for i in range(N)
    ]
    answers = asyncio.run(_post_all(server.url, api_keys.write, bodies))
    codes = [r.status_code for r in answers]
    if same:
        assert sorted(codes) == [200] * (N - 1) + [201], codes
        assert {r.json()["id"] for r in answers} == {"race-1"}
        won = 0
    else:
        assert codes.count(201) == 1 and codes.count(409) == N - 1, codes
        won = codes.index(201)
        for r in answers:
            if r.status_code == 409:
                assert r.json()["error"]["code"] == "run_id_conflict", r.text
    with client(server, api_keys.read) as api:
        run = api.get("/v1/runs/race-1").json()
        assert run["input"] == {"n": won}
        assert api.get("/v1/runs", params={"workflow": "counter"}).json()["items"][0]["id"] == (
            "race-1"
        )


def test_runyard_start_with_a_run_id_compares_the_request(yard: Runyard) -> None:
    @yard.workflow
    async def double(ctx: Context, n: int) -> int:
        return n * 2

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("double", input=2, run_id="in-process-1")
            assert await h.result(timeout=20) == 4
            again = await yard.start("double", input=2, run_id="in-process-1")
            assert again.id == "in-process-1" and await again.result(timeout=5) == 4
            with pytest.raises(RunIdConflict) as caught:
                await yard.start("double", input=3, run_id="in-process-1")
            assert isinstance(caught.value, IllegalTransition)
            assert caught.value.http_status == 409
            assert [d["field"] for d in caught.value.details] == ["inputs"]
            with pytest.raises(RunIdConflict, match="priority"):
                await yard.start("double", input=2, run_id="in-process-1", priority=3)
            # Concurrent starts with the same id and different inputs: one run, one winner.
            starts = [yard.start("double", input=i, run_id="in-process-2") for i in range(N)]
            results = await asyncio.gather(*starts, return_exceptions=True)
            won = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
            assert len(won) == 1, results
            assert all(isinstance(r, RunIdConflict) for r in results if r is not results[won[0]])
            winner = await yard.start("double", input=won[0], run_id="in-process-2")
            assert await winner.result(timeout=20) == won[0] * 2

    asyncio.run(main())


def test_a_generated_run_id_stores_no_request(yard: Runyard, db_url: str) -> None:
    """Only a client-chosen id is an idempotency key: a run whose id Runyard generated
    stores no request (its start pays nothing for it), and its id sent back as ``run_id``
    answers with that run, whatever the request; a chosen id still stores its request."""

    @yard.workflow
    async def triple(ctx: Context, n: int) -> int:
        return n * 3

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("triple", input=2)
            assert await h.result(timeout=20) == 6
            chosen = await yard.start("triple", input=2, run_id="chosen-1")
            assert await chosen.result(timeout=20) == 6
            rows = raw_sql(
                db_url, "SELECT id, request FROM runs WHERE id IN (%s, %s)", (h.id, "chosen-1")
            )
            stored = dict(rows)
            assert stored[h.id] is None and stored["chosen-1"] is not None
            again = await yard.start("triple", input=5, run_id=h.id)
            assert again.id == h.id and await again.result(timeout=5) == 6
            with pytest.raises(RunIdConflict):
                await yard.start("triple", input=5, run_id="chosen-1")

    asyncio.run(main())
