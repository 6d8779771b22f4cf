"""The MCP Tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663) on ``/mcp`` of a
real server process, with a real worker process, through the official ``mcp`` client
SDK, on both backends: a declaring client gets a task whose id is the run id, polls
``tasks/get`` to the result and cancels another run with ``tasks/cancel``; a client
without the extension gets the tool's normal behaviour; a closed response stream does
not cancel the run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import httpx2
import mcp.types as types
import pytest
from mcp.client import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY
from pydantic import ConfigDict

from mcp import Client
from runyard.mcp.tasks import TASKS_EXTENSION
from tests.apps.e2e_support import spawn
from tests.conftest import WorkerProcess
from tests.server.conftest import Keys, ServerProcess, create_keys
from tests.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.anyio

APP = "mcp_tasks_app"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CreateTaskResult(types.Result):
    """``resultType: "task"``: the task a ``tools/call`` answered with."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskState(types.Result):
    """A ``tasks/get`` answer."""

    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None


class Ack(types.Result):
    model_config = ConfigDict(extra="allow")


class TaskParams(types.RequestParams):
    task_id: str


class UpdateParams(TaskParams):
    input_responses: dict[str, Any]


class GetTask(types.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams
    name_param = "taskId"


class UpdateTask(types.Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams
    name_param = "taskId"


class CancelTask(types.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams
    name_param = "taskId"


class Tasks(ClientExtension):
    """The client half: declares the extension and claims the ``task`` result shape
    (the tests read the task themselves, with ``allow_claimed=True``)."""

    identifier = TASKS_EXTENSION

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=self._resolve)]

    async def _resolve(self, task: CreateTaskResult, ctx: ClaimContext) -> types.CallToolResult:
        raise AssertionError("the tests read tasks with allow_claimed=True")


@dataclass(frozen=True, slots=True)
class Served:
    api: ServerProcess  # the API server (/v1), to check the runs
    mcp_url: str  # its /mcp, with the Tasks extension
    keys: Keys


@asynccontextmanager
async def mcp_client(served: Served, key: str, *, tasks: bool) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"x-api-key": key}, timeout=httpx2.Timeout(30, read=60))
    async with http:
        transport = streamable_http_client(served.mcp_url, http_client=http)
        async with Client(transport, extensions=[Tasks()] if tasks else None) as client:
            yield client


async def get_task(client: Client, task_id: str) -> TaskState:
    return await client.session.send_request(GetTask(params=TaskParams(task_id=task_id)), TaskState)


async def start_task(client: Client, tool: str, arguments: dict[str, Any]) -> CreateTaskResult:
    answer = await client.session.call_tool(tool, arguments, allow_claimed=True)
    assert isinstance(answer, CreateTaskResult), answer
    return answer


def api(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30)


def runs_of(server: ServerProcess, key: str, workflow: str) -> list[dict[str, Any]]:
    with api(server, key) as c:
        answer = c.get("/v1/runs", params={"workflow": workflow})
        answer.raise_for_status()
        items: list[dict[str, Any]] = answer.json()["items"]
        return items


@pytest.fixture
def served(
    db_url: str,
    tmp_path: Path,
    worker_procs: list[WorkerProcess],
) -> Iterator[Served]:
    """The API server (its ``/mcp`` speaks the extension; a tool call waits 1 s) and a
    worker serving the test workflows, on the test's database, the workflows published."""
    keys = create_keys(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log", {"RUNYARD_MCP_WAIT": "1"}).start()
    try:
        spawn(worker_procs, APP, db_url, tmp_path, concurrency=4)

        def published() -> bool:
            with api(server, keys.read) as c:
                names = {w["name"] for w in c.get("/v1/workflows").json()["items"]}
            return {"quick", "paced"} <= names

        wait_until(published, timeout=30, what="the test workflows published")
        yield Served(server, f"{server.url}/mcp", keys)
    finally:
        server.stop()


async def test_a_declaring_client_gets_a_task_polled_to_its_result(
    served: Served,
) -> None:
    server, keys = served.api, served.keys
    async with mcp_client(served, keys.write, tasks=True) as client:
        discover = client.session.server_capabilities
        assert discover is not None and TASKS_EXTENSION in (discover.extensions or {})

        task = await start_task(client, "quick", {"name": "ada"})
        # The task id is the run id, and the run exists before the answer left.
        with api(server, keys.read) as c:
            run = c.get(f"/v1/runs/{task.task_id}").json()
        assert run["id"] == task.task_id and run["workflow"] == "quick"
        assert task.status in {"working", "completed"}
        assert task.created_at.endswith("Z") and task.status_message

        async def done() -> TaskState:
            state = await get_task(client, task.task_id)
            assert state.status in {"working", "completed"}, state
            if state.status != "completed":
                assert state.poll_interval_ms == 1000 and state.ttl_ms is None
                raise AssertionError(f"still {state.status}")
            return state

        state = await wait_until_async(done, timeout=20, ignoring=(AssertionError,), what="done")
        assert state.result is not None and state.result.get("isError") is not True
        assert state.result["structuredContent"] == {"hello": "ada"} or {"hello": "ada"} in (
            state.result["structuredContent"].values()
        )
        assert "ada" in " ".join(c.get("text", "") for c in state.result["content"])
        # Ended: kept RUNYARD_RETENTION_DAYS (30) after its end, no more polling advised.
        assert state.ttl_ms is not None and state.ttl_ms >= 30 * 86400 * 1000
        assert state.poll_interval_ms is None
        assert "succeeded" in (state.status_message or "")
        # tasks/update: an acknowledgement (no input is ever outstanding).
        ack = await client.session.send_request(
            UpdateTask(params=UpdateParams(task_id=task.task_id, input_responses={"k": {}})), Ack
        )
        assert ack.model_extra in ({}, {"resultType": "complete"}, None)
        # An unknown task id: -32602 naming taskId.
        with pytest.raises(MCPError) as unknown:
            await get_task(client, "no-such-run")
        assert unknown.value.code == INVALID_PARAMS and "taskId" in unknown.value.message
    assert [r["id"] for r in runs_of(server, keys.read, "quick")] == [task.task_id]


async def test_tasks_cancel_cancels_the_run(served: Served) -> None:
    server, keys = served.api, served.keys
    async with mcp_client(served, keys.write, tasks=True) as client:
        task = await start_task(client, "paced", {"seconds": 60})
        assert task.status == "working" and task.poll_interval_ms == 1000 and task.ttl_ms is None

        async def half_way() -> TaskState:
            state = await get_task(client, task.task_id)
            assert state.status == "working"
            assert state.status_message == "running, 50%: half way", state.status_message
            return state

        await wait_until_async(half_way, timeout=20, ignoring=(AssertionError,), what="progress")
        ack = await client.session.send_request(
            CancelTask(params=TaskParams(task_id=task.task_id)), Ack
        )
        assert isinstance(ack, Ack)

        async def cancelled() -> TaskState:
            state = await get_task(client, task.task_id)
            assert state.status == "cancelled", state
            return state

        state = await wait_until_async(
            cancelled, timeout=20, ignoring=(AssertionError,), what="cancelled"
        )
        assert state.result is None and state.ttl_ms is not None
    with api(server, keys.read) as c:
        assert c.get(f"/v1/runs/{task.task_id}").json()["status"] == "CANCELED"


async def test_a_read_key_cannot_cancel_a_task(served: Served) -> None:
    server, keys = served.api, served.keys
    async with mcp_client(served, keys.write, tasks=True) as writer:
        task = await start_task(writer, "paced", {"seconds": 60})
    async with mcp_client(served, keys.read, tasks=True) as reader:
        assert (await get_task(reader, task.task_id)).status == "working"
        with pytest.raises(MCPError) as refused:
            await reader.session.send_request(
                CancelTask(params=TaskParams(task_id=task.task_id)), Ack
            )
        assert "write" in refused.value.message
    with api(server, keys.write) as c:
        assert c.get(f"/v1/runs/{task.task_id}").json()["status"] != "CANCELED"
        c.post(f"/v1/runs/{task.task_id}/cancel")


async def test_a_client_without_the_extension_gets_the_normal_tool(
    served: Served,
) -> None:
    server, keys = served.api, served.keys
    async with mcp_client(served, keys.write, tasks=False) as client:
        result = await client.call_tool("quick", {"name": "bo"})
        assert not result.is_error and "bo" in str(result.structured_content)
        # A slow run: past the wait (1 s) the background message of item 3, no task.
        started = time.monotonic()
        slow = await client.call_tool("paced", {"seconds": 30})
        assert time.monotonic() - started < 10
        assert not slow.is_error
        text = " ".join(c.text for c in slow.content if isinstance(c, types.TextContent))
        assert "get_workflow_result" in text and "background" in text
        with pytest.raises(MCPError) as refused:
            await client.session.send_request(GetTask(params=TaskParams(task_id="x")), TaskState)
        assert refused.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    (run,) = runs_of(server, keys.read, "paced")
    with api(server, keys.write) as c:
        c.post(f"/v1/runs/{run['id']}/cancel")


async def test_a_closed_stream_does_not_cancel_the_run(
    served: Served,
) -> None:
    """On streamable HTTP, closing the response stream cancels the request: the run
    it started goes on to its end."""
    server, keys = served.api, served.keys
    async with mcp_client(served, keys.write, tasks=False) as client:
        progressed = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            progressed.set()

        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool("paced", {"seconds": 3}, progress_callback=on_progress)

            tg.start_soon(call)
            with anyio.fail_after(20):
                await progressed.wait()
            # The client gives up on the call: its response stream is closed.
            tg.cancel_scope.cancel()

    def ended() -> dict[str, Any]:
        (run,) = runs_of(server, keys.read, "paced")
        assert run["status"] in {"SUCCEEDED", "CANCELED", "FAILED"}, run["status"]
        return run

    run = wait_until(ended, timeout=20, ignoring=(AssertionError,), what="the run ended")
    assert run["status"] == "SUCCEEDED"
