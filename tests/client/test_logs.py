"""Run logs through the HTTP API: ``GET /v1/runs/{id}/logs``, the SDK's ``logs`` and
``iter_logs`` (sync and async) and ``runyard runs logs``, against a real server and
worker process on both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from runyard import InvalidInput, RunNotFound
from runyard.client import AsyncClient, Client
from tests.cli.conftest import runyard
from tests.client.support import Served

EXPECTED = [*(("INFO", f"line {i} of 25") for i in range(25)), ("WARNING", "done")]


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    with Client(served.url, served.api_key, timeout=30) as c:
        yield c


@pytest.fixture
def chatty_run(client: Client) -> str:
    """A finished run that logged 26 lines."""
    run = client.start_run("chatty", 25)
    client.wait_for_completion(run.id, 30)
    return run.id


def test_logs_pages_and_iter_logs(client: Client, chatty_run: str) -> None:
    page = client.logs(chatty_run)
    assert [(x.level, x.message) for x in page.items] == EXPECTED
    assert page.next_cursor is None
    assert {(x.item, x.iteration, x.attempt) for x in page.items} == {(0, 1, 1)}

    first = client.logs(chatty_run, limit=10)
    assert first.items == page.items[:10] and first.next_cursor == str(first.items[-1].id)
    second = client.logs(chatty_run, after=first.next_cursor, limit=10)
    assert second.items == page.items[10:20]
    assert list(client.iter_logs(chatty_run, limit=7)) == page.items
    assert list(client.iter_logs(chatty_run, after=page.items[-2].id)) == page.items[-1:]

    with pytest.raises(RunNotFound):
        client.logs("no-such-run")
    with pytest.raises(InvalidInput):
        client.logs(chatty_run, limit=0)


def test_async_client_logs(served: Served, chatty_run: str) -> None:
    async def main() -> None:
        async with AsyncClient(served.url, served.api_key, timeout=30) as client:
            page = await client.logs(chatty_run, limit=5)
            assert len(page.items) == 5 and page.next_cursor
            lines = [x async for x in client.iter_logs(chatty_run, limit=4)]
            assert [(x.level, x.message) for x in lines] == EXPECTED
            with pytest.raises(RunNotFound):
                await client.logs("no-such-run")

    asyncio.run(main())


def test_the_endpoint_pages_with_a_header_and_names_bad_fields(
    served: Served, chatty_run: str
) -> None:
    with httpx.Client(
        base_url=served.url, headers={"x-api-key": served.make_key("read")}, timeout=30
    ) as api:
        r = api.get(f"/v1/runs/{chatty_run}/logs", params={"limit": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [x["message"] for x in body["items"]] == [m for _, m in EXPECTED[:3]]
        assert r.headers["x-pagination-next"] == body["next_cursor"] == str(body["items"][-1]["id"])
        last = api.get(f"/v1/runs/{chatty_run}/logs", params={"after": body["next_cursor"]})
        assert len(last.json()["items"]) == 23 and "x-pagination-next" not in last.headers
        for params, field in (({"after": "-1"}, "after"), ({"limit": "1001"}, "limit")):
            bad = api.get(f"/v1/runs/{chatty_run}/logs", params=params)
            assert bad.status_code == 422, bad.text
            assert field in json.dumps(bad.json()["error"]["details"])
        missing = api.get("/v1/runs/no-such-run/logs")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"


def test_runs_logs_command(served: Served, chatty_run: str) -> None:
    env = {"RUNYARD_URL": served.url, "RUNYARD_API_KEY": served.api_key}
    shown = runyard("runs", "logs", chatty_run, "--json", "--all", "--limit", "10", env=env)
    assert shown.returncode == 0, shown.stderr
    out = json.loads(shown.stdout)
    assert [(x["level"], x["message"]) for x in out["items"]] == EXPECTED
    assert out["next_cursor"] is None

    table = runyard("runs", "logs", chatty_run, "--limit", "3", env=env)
    assert table.returncode == 0, table.stderr
    assert "line 2 of 25" in table.stdout and "line 3 of 25" not in table.stdout
    assert "more: --after" in table.stdout

    missing = runyard("runs", "logs", "no-such-run", env=env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
