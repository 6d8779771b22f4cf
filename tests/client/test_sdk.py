"""The SDK against a real server process and real worker processes, on both backends."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import (
    IllegalTransition,
    InvalidInput,
    NotFound,
    RunFailed,
    RunNotFound,
    RunStatus,
    Timeout,
)
from runyard.client import AsyncClient, Client, Forbidden, Unauthorized
from runyard.schemas import LiveRunOut, RunOut, RunStatusOut
from tests.client.support import Served
from tests.waiting import wait_until


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    with Client(served.url, served.api_key, timeout=30) as c:
        yield c


def test_start_persist_restart_result(served: Served, tmp_path: Path) -> None:
    saved = tmp_path / "run-id"
    with Client(served.url, served.api_key) as first:
        run = first.start_run("order", {"sku": "book", "qty": 3})
        assert isinstance(run, RunOut) and run.workflow == "order"
        assert run.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED)
        saved.write_text(run.id)
        again = first.start_run("order", {"sku": "book", "qty": 3}, run_id=run.id)
        assert again.id == run.id  # the same id returns the same run, not a second one
    # a new process would build a new client from the saved id
    with Client(served.url, served.api_key) as restarted:
        run_id = saved.read_text()
        assert restarted.result(run_id, timeout=30) == {"sku": "book", "qty": 3}
        final = restarted.get_result(run_id)
        assert isinstance(final, RunOut) and final.status is RunStatus.SUCCEEDED
        assert final.credits == 3
        assert restarted.get_status(run_id).terminal


def test_wait_for_completion(client: Client) -> None:
    run = client.start_run("nap", 1.5)
    pending = client.get_result(run.id, timeout=0.2)
    assert isinstance(pending, RunStatusOut) and not pending.terminal
    with pytest.raises(Timeout):
        client.wait_for_completion(run.id, timeout=0.3)
    done = client.wait_for_completion(run.id, timeout=30)
    assert done.status is RunStatus.SUCCEEDED and done.result == {"slept": 1.5}
    assert [s.name for s in client.steps(run.id)] == ["first", "emit", "second"]

    failed = client.start_run("boom", "kaput")
    assert client.wait_for_completion(failed.id, 30).status is RunStatus.FAILED
    with pytest.raises(RunFailed) as info:
        client.result(failed.id, timeout=30)
    assert info.value.status == "FAILED" and "kaput" in info.value.message


def test_iter_runs_has_no_repeats_or_gaps(client: Client) -> None:
    ids = {client.start_run("listed", i).id for i in range(23)}
    for order in ("desc", "asc"):
        seen = [r.id for r in client.iter_runs(workflow="listed", limit=5, order=order)]
        assert len(seen) == len(set(seen)), "a run appeared twice"
        assert set(seen) == ids, "a run was skipped"
    page = client.list_runs(workflow="listed", limit=5)
    assert len(page.items) == 5 and page.next_cursor
    for r in client.iter_runs(workflow="listed", limit=100):
        client.wait_for_completion(r.id, 30)
    succeeded = list(client.iter_runs(workflow="listed", status=["SUCCEEDED", "FAILED"]))
    assert {r.id for r in succeeded} == ids
    assert not list(client.iter_runs(workflow="listed", status="PAUSED"))


def test_iter_outputs_exact(client: Client) -> None:
    run = client.start_run("emit_many", 237)
    client.wait_for_completion(run.id, 60)
    outputs = list(client.iter_outputs(run.id, limit=50))
    assert [o.data for o in outputs] == [{"n": i} for i in range(237)]
    assert [o.id for o in outputs] == sorted({o.id for o in outputs})
    first = client.outputs(run.id, limit=10)
    assert len(first.items) == 10 and first.next_cursor
    rest = client.outputs(run.id, cursor=first.next_cursor, limit=500)
    assert [o.data["n"] for o in rest.items][:3] == [10, 11, 12]


def test_typed_errors(served: Served, client: Client) -> None:
    with pytest.raises(RunNotFound) as missing:
        client.get_run("no-such-run")
    assert missing.value.code == "run_not_found" and missing.value.http_status == 404
    with pytest.raises(NotFound):
        client.start_run("no_such_workflow", {})

    done = client.start_run("order", {"sku": "a", "qty": 1})
    client.wait_for_completion(done.id, 30)
    with pytest.raises(IllegalTransition):
        client.pause(done.id)

    with pytest.raises(InvalidInput) as bad:
        client.start_run("order", {"sku": "", "qty": "many"})
    fields = {d["field"] for d in bad.value.details}
    assert {"input.sku", "input.qty"} <= fields, bad.value.details
    with pytest.raises(InvalidInput) as bad_option:
        client.start_run("order", {"sku": "a", "qty": 1}, retries=-1)
    assert "retries" in {d["field"] for d in bad_option.value.details}

    with Client(served.url, api_key="") as anonymous, pytest.raises(Unauthorized):
        anonymous.list_runs()
    with Client(served.url, api_key="ry_not-a-key") as wrong, pytest.raises(Unauthorized):
        wrong.get_run(done.id)
    with Client(served.url, api_key=served.make_key("read")) as reader:
        assert reader.get_run(done.id).id == done.id
        with pytest.raises(Forbidden):
            reader.start_run("order", {"sku": "a", "qty": 1})


def test_live_mode(client: Client) -> None:
    live = client.start_run("emit_many", 3, mode="live", wait_timeout=20)
    assert isinstance(live, LiveRunOut)
    assert live.run.status is RunStatus.SUCCEEDED and live.run.result == 3
    assert [o.data for o in live.outputs] == [{"n": 0}, {"n": 1}, {"n": 2}]
    slow = client.start_run("nap", 2.0, mode="live", wait_timeout=0.2)
    assert isinstance(slow, RunStatusOut) and not slow.terminal
    assert client.wait_for_completion(slow.id, 30).status is RunStatus.SUCCEEDED


def test_control_a_run(client: Client) -> None:
    run = client.start_run("nap", 1.0, run_id=uid("ctl"))
    paused = client.pause(run.id)
    assert paused.status is RunStatus.PAUSED
    assert client.resume(run.id).status in (RunStatus.QUEUED, RunStatus.RUNNING)
    assert client.wait_for_completion(run.id, 30).status is RunStatus.SUCCEEDED
    assert [i.state for i in client.inputs(run.id)] == ["completed"]
    assert client.queue(run.id).items == []  # by default only the items still to do
    assert client.queue(run.id, include_history=True).items[0].state == "completed"

    forked = client.fork(run.id, "second", new_run_id=uid("fork"))
    assert forked.parent_id == run.id
    assert client.result(forked.id, timeout=30) == {"slept": 1.0}

    again = client.continue_(run.id)
    assert again.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    assert client.wait_for_completion(run.id, 30).iteration == again.iteration

    one = client.start_run("nap", 30.0)
    assert client.cancel(one.id).status is RunStatus.CANCELED
    many = [client.start_run("nap", 30.0).id for _ in range(3)]
    assert sorted(client.bulk_cancel(ids=many).canceled) == sorted(many)
    assert client.get_status(many[0]).status is RunStatus.CANCELED


def test_events_stream(client: Client) -> None:
    run = client.start_run("nap", 1.0)
    events = list(client.stream_events(run.id))
    kinds = [e.event for e in events]
    assert kinds[-1] == "end"
    assert "output" in kinds
    progress = [e.data for e in events if e.event == "progress"]
    assert progress, kinds
    assert client.get_run(run.id).status is RunStatus.SUCCEEDED


def test_tasks(client: Client) -> None:
    task = client.create_task("order", {"sku": "pen", "qty": 2}, name="pens")
    assert task.workflow == "order" and task.name == "pens"
    assert task.id in {t.id for t in client.iter_tasks(limit=2)}
    changed = client.update_task(task.id, input={"sku": "pen", "qty": 5})
    assert changed.input == {"sku": "pen", "qty": 5} and changed.name == "pens"
    run = client.execute_task(task.id)
    assert run.task_id == task.id
    assert client.result(run.id, timeout=30) == {"sku": "pen", "qty": 5}
    assert [r.id for r in client.iter_runs(task_id=task.id)] == [run.id]
    client.delete_task(task.id)
    with pytest.raises(NotFound):
        client.get_task(task.id)


def test_events_usage_and_workflows(client: Client) -> None:
    event_id = uid("approve")
    run = client.start_run("waiter", event_id)
    waiters = wait_until(
        lambda: client.waiters(event_id), timeout=10, interval=0.1, what=f"a waiter of {event_id}"
    )
    assert [w.run_id for w in waiters] == [run.id]
    assert client.notify(event_id, {"ok": True}).woken == [run.id]
    assert client.result(run.id, timeout=30) == {"ok": True}

    assert client.health().status == "ok"
    assert "runyard" in client.metrics()
    names = {w.name for w in client.list_workflows()}
    assert {"order", "nap", "emit_many"} <= names
    schema = client.get_workflow("order").input_schema
    assert set(schema["properties"]) == {"sku", "qty"}
    usage = client.usage(workflow="order")
    assert usage.by_action.get("order", 0) >= 1


def test_async_client(served: Served) -> None:
    async def main() -> None:
        async with AsyncClient(served.url, served.api_key) as client:
            run = await client.start_run("nap", 0.5)
            async with AsyncClient(served.url, served.api_key) as other:
                again = await other.get_result(run.id, 0.05)
            assert isinstance(again, RunStatusOut | RunOut)
            kinds = [e.event async for e in client.stream_events(run.id)]
            assert kinds[-1] == "end"
            assert await client.result(run.id, timeout=30) == {"slept": 0.5}
            done = await client.wait_for_completion(run.id, 5)
            assert done.status is RunStatus.SUCCEEDED
            ids = [r.id async for r in client.iter_runs(workflow="nap", limit=2)]
            assert run.id in ids and len(ids) == len(set(ids))
            out = [o.data async for o in client.iter_outputs(run.id, limit=1)]
            assert out == [{"half": True}]
            with pytest.raises(RunNotFound):
                await client.get_status("no-such-run")
            live = await client.start_run("emit_many", 2, mode="live")
            assert isinstance(live, LiveRunOut) and live.run.result == 2

    asyncio.run(main())
