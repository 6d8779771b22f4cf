"""The MCP server through the official ``mcp`` client SDK, against real processes on both
backends: a real API server (``/mcp``, streamable HTTP, a tool call waits 2 s) and the
real ``runyard mcp --wait 2`` over stdio talking to it, with a real worker process.

Each transport: the tools listed with their schemas; a fast workflow answers in the
call; a slow one sends progress and answers with the background message within about
the wait, ``get_workflow_result`` then gives its result, and exactly one run exists;
``cancel_workflow`` cancels a running run; bad input names every bad field and writes no
run. On HTTP: 401 without a key, a read-scoped key sees and calls only the read tools,
and a worker SIGKILLed while the assistant waits: the run resumes on another worker
and ``get_workflow_result`` gets its result."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from runyard.mcp.port import FIXED_TOOLS, READ_TOOLS
from tests.apps.ledger import LEDGER_ENV
from tests.client.support import cli_env
from tests.conftest import BACKENDS, ROOT, WorkerProcess, fresh_database
from tests.server.conftest import Keys, ServerProcess, create_keys
from tests.waiting import NotYet, wait_until, wait_until_async

pytestmark = pytest.mark.anyio

WAIT_S = 2.0
WORKFLOWS = {"greet", "nap", "noop"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True, slots=True)
class Served:
    server: ServerProcess
    keys: Keys
    db_url: str
    folder: Path

    @property
    def mcp_url(self) -> str:
        return self.server.url + "/mcp"


def _worker(app: str, db_url: str, folder: Path, name: str) -> WorkerProcess:
    return WorkerProcess(
        app=f"tests.apps.{app}:yard",
        db_url=db_url,
        concurrency=8,
        lease_s=2.0,
        env={LEDGER_ENV: str(folder / "ledger.txt")},
        log=folder / f"{name}.log",
    ).start()


def api(served: Served, key: str | None = None) -> httpx.Client:
    headers = {"x-api-key": key or served.keys.admin}
    return httpx.Client(base_url=served.server.url, headers=headers, timeout=30)


def published(served: Served, names: set[str]) -> None:
    def check() -> bool | NotYet:
        with api(served) as c:
            found = {w["name"] for w in c.get("/v1/workflows").json()["items"]}
        return names <= found or NotYet({"missing": sorted(names - found)})

    wait_until(check, timeout=30, interval=0.1, what=f"workflows {sorted(names)} published")


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"mcp-{request.param}")
    with fresh_database(str(request.param), folder, pg_template) as db_url:
        keys = create_keys(db_url)
        server = ServerProcess(db_url, folder / "server.log", {"RUNYARD_MCP_WAIT": str(WAIT_S)})
        worker = _worker("mcp_app", db_url, folder, "worker")
        try:
            server.start()
            s = Served(server, keys, db_url, folder)
            published(s, WORKFLOWS)
            yield s
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)
            worker.terminate(timeout=15)


@asynccontextmanager
async def http_client(served: Served, key: str | None = None) -> AsyncIterator[Client]:
    headers = {"x-api-key": key or served.keys.write}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60))
    async with http, Client(streamable_http_client(served.mcp_url, http_client=http)) as client:
        yield client


@asynccontextmanager
async def stdio_client(served: Served) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "runyard", "mcp", "--wait", str(WAIT_S)],
        env=cli_env(RUNYARD_URL=served.server.url, RUNYARD_API_KEY=served.keys.write),
        cwd=str(ROOT),
    )
    async with Client(params) as client:
        yield client


def body(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def runs_with_input(served: Served, workflow: str, value: Any) -> list[dict[str, Any]]:
    with api(served) as c:
        answer = c.get("/v1/runs", params={"workflow": workflow, "limit": 100})
        answer.raise_for_status()
        return [r for r in answer.json()["items"] if r["input"] == value]


# -- scenarios, each run over both transports -------------------------------------------------


async def tools_listed(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= WORKFLOWS | set(FIXED_TOOLS)
    greet = tools["greet"]
    assert greet.input_schema["type"] == "object"
    assert set(greet.input_schema["properties"]) == {"name", "times"}
    assert greet.input_schema["required"] == ["name"]
    assert greet.description is not None and greet.description.startswith("Greet someone")
    # A non-object input is the tool's "input" argument.
    assert tools["noop"].input_schema["required"] == ["input"]
    for name in FIXED_TOOLS:
        assert tools[name].output_schema is not None, name
    assert set(tools["get_workflow_result"].input_schema["required"]) == {
        "workflowId",
        "operationName",
    }


async def fast_result(client: Client) -> None:
    started = time.monotonic()
    result = await client.call_tool("greet", {"name": "ada", "times": 2})
    assert not result.is_error, body(result)
    assert json.loads(body(result)) == "hello ada hello ada"
    assert result.structured_content is not None
    assert result.structured_content["status"] == "SUCCEEDED"
    assert time.monotonic() - started < WAIT_S
    answer = await client.call_tool("noop", {"input": 7})
    assert answer.structured_content is not None and answer.structured_content["result"] == 7


async def slow_then_result(client: Client, served: Served, seconds: float) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    started = time.monotonic()
    args = {"seconds": seconds, "steps": 4}
    first = await client.call_tool("nap", args, progress_callback=on_progress)
    took = time.monotonic() - started
    text = body(first)
    assert not first.is_error, text
    assert WAIT_S - 0.2 <= took < WAIT_S + 1.5, took
    out = first.structured_content
    assert out is not None and out["background"] is True
    run_id = out["workflowId"]
    assert out["operationName"] == "nap"
    assert out["status"] in ("QUEUED", "RUNNING")
    assert "get_workflow_result" in text and run_id in text and "do NOT call" in text
    # Progress: the accepted run at once, then its own messages as it goes.
    assert seen, "no progress notification"
    assert [v for v, _ in seen] == sorted({v for v, _ in seen})  # increasing
    assert any(m and "step 1 of 4" in m for _, m in seen), seen

    async def done() -> types.CallToolResult | NotYet:
        again = await client.call_tool(
            "get_workflow_result", {"workflowId": run_id, "operationName": "nap"}
        )
        assert not again.is_error, body(again)
        assert again.structured_content is not None
        if again.structured_content.get("background"):
            return NotYet(again.structured_content)
        return again

    final = await wait_until_async(done, timeout=seconds + 20, what="the nap's result")
    assert final.structured_content is not None
    assert final.structured_content["result"] == {"slept": seconds}
    assert final.structured_content["status"] == "SUCCEEDED"
    assert [r["id"] for r in runs_with_input(served, "nap", args)] == [run_id]


async def slow_without_progress(client: Client, served: Served, seconds: float) -> None:
    """A call without a progress token (over stdio: one live-mode start that waits)
    answers with the background message at the wait, having started one run."""
    args = {"seconds": seconds, "steps": 2}
    started = time.monotonic()
    first = await client.call_tool("nap", args)
    took = time.monotonic() - started
    assert not first.is_error, body(first)
    assert WAIT_S - 0.2 <= took < WAIT_S + 1.5, took
    out = first.structured_content
    assert out is not None and out["background"] is True and out["operationName"] == "nap"
    assert out["status"] in ("QUEUED", "RUNNING")
    assert "get_workflow_result" in body(first) and out["workflowId"] in body(first)
    assert [r["id"] for r in runs_with_input(served, "nap", args)] == [out["workflowId"]]


async def cancel_running(client: Client, served: Served) -> None:
    with api(served) as c:
        answer = c.post("/v1/runs", json={"workflow": "nap", "input": {"seconds": 60}})
        answer.raise_for_status()
        run_id = answer.json()["id"]

        def running() -> bool | NotYet:
            status = c.get(f"/v1/runs/{run_id}/status").json()["status"]
            return status == "RUNNING" or NotYet(status)

        wait_until(running, timeout=20, what="the nap running")
    result = await client.call_tool("cancel_workflow", {"workflowId": run_id})
    assert not result.is_error, body(result)
    assert result.structured_content is not None
    assert result.structured_content["status"] == "CANCELED"
    again = await client.call_tool(
        "get_workflow_result", {"workflowId": run_id, "operationName": "nap"}
    )
    assert again.is_error and "CANCELED" in body(again)
    with api(served) as c:
        assert c.get(f"/v1/runs/{run_id}/status").json()["status"] == "CANCELED"


async def bad_input(client: Client, served: Served) -> None:
    before = runs_with_input(served, "greet", {"times": "twice"})
    result = await client.call_tool("greet", {"times": "twice"})
    assert result.is_error
    error = json.loads(body(result))["error"]
    assert error["code"] == "invalid_input"
    fields = {d["field"] for d in error["details"]}
    assert {"name", "times"} <= fields, error
    assert "name" in error["message"] and "times" in error["message"]
    assert runs_with_input(served, "greet", {"times": "twice"}) == before == []
    # The server's own tools name their bad arguments too.
    wrong = await client.call_tool("list_runs", {"limit": 0, "colour": "red"})
    assert wrong.is_error
    fields = {d["field"] for d in json.loads(body(wrong))["error"]["details"]}
    assert fields == {"limit", "colour"}
    unknown = await client.call_tool(
        "get_workflow_result", {"workflowId": "no-such-run", "operationName": "nap"}
    )
    assert unknown.is_error and json.loads(body(unknown))["error"]["code"] == "run_not_found"


# -- tests ------------------------------------------------------------------------------------


async def test_http_tools_and_fast_result(served: Served) -> None:
    async with http_client(served) as client:
        await tools_listed(client)
        await fast_result(client)


async def test_http_slow_run_in_background(served: Served) -> None:
    async with http_client(served) as client:
        await slow_then_result(client, served, 3.2)
        await slow_without_progress(client, served, 3.1)


async def test_http_cancel_and_bad_input(served: Served) -> None:
    async with http_client(served) as client:
        await cancel_running(client, served)
        await bad_input(client, served)


async def test_http_events_and_usage_tools(served: Served) -> None:
    async with http_client(served) as client:
        waiters = await client.call_tool("get_waiters", {"eventId": "mcp:nobody"})
        assert not waiters.is_error, body(waiters)
        assert waiters.structured_content == {"eventId": "mcp:nobody", "waiters": []}
        sent = await client.call_tool("notify_event", {"eventId": "mcp:nobody", "data": {"a": 1}})
        assert sent.structured_content == {"eventId": "mcp:nobody", "woken": []}
        usage = await client.call_tool("get_usage", {"workflow": "greet"})
        assert not usage.is_error, body(usage)
        assert usage.structured_content is not None and usage.structured_content["total"] == 0
        bad = await client.call_tool("get_usage", {"since": "yesterday"})
        assert bad.is_error and json.loads(body(bad))["error"]["details"][0]["field"] == "since"


async def test_stdio(served: Served) -> None:
    """The same over ``runyard mcp --wait 2``, a subprocess talking to the server."""
    async with stdio_client(served) as client:
        await tools_listed(client)
        await fast_result(client)
        await slow_then_result(client, served, 3.3)
        await slow_without_progress(client, served, 3.4)
        await cancel_running(client, served)
        await bad_input(client, served)


def test_http_needs_a_key(served: Served) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"x-api-key": "ry_not_a_key"}):
        answer = httpx.post(served.mcp_url, json=hello, headers=headers, timeout=10)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthorized"


async def test_read_key_sees_read_tools(served: Served) -> None:
    async with http_client(served, served.keys.read) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == set(READ_TOOLS)
        refused = await client.call_tool("greet", {"name": "eve"})
        assert refused.is_error
        assert json.loads(body(refused))["error"]["code"] == "forbidden"
        refused = await client.call_tool("cancel_workflow", {"workflowId": "x"})
        assert json.loads(body(refused))["error"]["code"] == "forbidden"
        listed = await client.call_tool("list_runs", {"workflow": "greet", "limit": 5})
        assert not listed.is_error, body(listed)
    assert runs_with_input(served, "greet", {"name": "eve"}) == []


async def test_worker_killed_while_waiting(served: Served) -> None:
    """Also: a worker publishing a new workflow changes the tool list, and a listening
    client is told (``notifications/tools/list_changed``)."""
    holders: list[WorkerProcess] = []
    try:
        async with http_client(served) as client:
            assert "held" not in {t.name for t in (await client.list_tools()).tools}
            async with client.listen(tools_list_changed=True) as changes:
                holders.append(_worker("mcp_held", served.db_url, served.folder, "held1"))
                with anyio.fail_after(30):
                    async for _event in changes:
                        break
            tools = {t.name: t for t in (await client.list_tools(cache_mode="refresh")).tools}
            assert tools["held"].input_schema["required"] == ["input"]
        holder = holders[0]
        published(served, {"held"})
        async with http_client(served) as client:
            first = await client.call_tool("held", {"input": "k9"})
            assert not first.is_error, body(first)
            assert first.structured_content is not None
            assert first.structured_content["background"] is True
            run_id = first.structured_content["workflowId"]
            holder.kill()  # SIGKILL, mid-step
            successor = _worker("mcp_held", served.db_url, served.folder, "held2")
            try:

                async def done() -> types.CallToolResult | NotYet:
                    again = await client.call_tool(
                        "get_workflow_result", {"workflowId": run_id, "operationName": "held"}
                    )
                    assert not again.is_error, body(again)
                    assert again.structured_content is not None
                    if again.structured_content.get("background"):
                        return NotYet(again.structured_content)
                    return again

                final = await wait_until_async(done, timeout=40, what="the held run resumed")
                assert final.structured_content is not None
                result = final.structured_content["result"]
                assert result["label"] == "k9" and result["pid"] == successor.proc.pid  # type: ignore[union-attr]
            finally:
                successor.terminate(timeout=15)
    finally:
        for h in holders:
            h.kill()
    assert [r["id"] for r in runs_with_input(served, "held", "k9")] == [run_id]


async def test_a_stopping_server_ends_open_mcp_streams(served: Served) -> None:
    """An open stream (``subscriptions/listen``) does not hold the graceful shutdown: the
    server exits at once on SIGTERM (RUNYARD_SHUTDOWN_S is 20 s here)."""
    other = ServerProcess(
        served.db_url, served.folder / "stopped.log", {"RUNYARD_SHUTDOWN_S": "20"}
    ).start()
    proc = other.proc
    assert proc is not None
    sent: list[float] = []
    try:
        stopped = Served(other, served.keys, served.db_url, served.folder)
        async with http_client(stopped) as client, client.listen(tools_list_changed=True):
            sent.append(time.monotonic())
            proc.send_signal(signal.SIGTERM)
            await wait_until_async(lambda: proc.poll() is not None, timeout=30, what="exit")
    except* Exception:
        pass  # the client sees its stream end with the server: that is the point
    try:
        wait_until(lambda: proc.poll() is not None, timeout=30, what="the server exited")
        assert sent and time.monotonic() - sent[0] < 5
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _raw(id: int, method: str, params: dict[str, Any]) -> bytes:
    return (
        json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}) + "\n"
    ).encode()


def test_stdio_raw_large_call_then_eof(served: Served) -> None:
    """``runyard mcp`` fed raw lines (the SDK's framing): a tools/call of 200 kB written
    in two pieces is answered whole, and closing its stdin ends it with status 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "mcp", "--wait", str(WAIT_S)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(RUNYARD_URL=served.server.url, RUNYARD_API_KEY=served.keys.write),
        cwd=str(ROOT),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        info = {"name": "raw", "version": "0"}
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": info}
        proc.stdin.write(_raw(1, "initialize", init))
        proc.stdin.flush()
        hello = json.loads(proc.stdout.readline())
        assert hello["id"] == 1 and "serverInfo" in hello["result"], hello
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        proc.stdin.write((json.dumps(initialized) + "\n").encode())
        name = "n" * 200_000
        call = _raw(2, "tools/call", {"name": "greet", "arguments": {"name": name}})
        half = len(call) // 2
        for piece in (call[:half], call[half:]):
            proc.stdin.write(piece)
            proc.stdin.flush()
            time.sleep(0.05)
        answer = json.loads(proc.stdout.readline())
        assert answer["id"] == 2, str(answer)[:500]
        result = answer["result"]
        assert not result.get("isError"), str(result)[:500]
        assert result["structuredContent"]["result"] == f"hello {name}"
        proc.stdin.close()  # EOF: the server ends, cleanly
        assert proc.wait(15) == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
