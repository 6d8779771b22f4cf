"""Callbacks end to end (both backends): real worker processes deliver to a loopback
receiver started here (allowed by RUNYARD_OUTBOUND_ALLOW); every body is verified with
the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from runyard import Runyard
from runyard.client.webhooks import WebhookVerifier
from runyard.errors import InvalidInput, WorkflowNotFound
from runyard.service import Delivery, ScheduleSpec
from runyard.service.callbacks import RETRY_AFTER_MAX_S, retry_after
from tests.callbacks.receiver import Receiver
from tests.conftest import BACKENDS, WorkerProcess, fresh_database, make_yard
from tests.waiting import NotYet, stays_true, wait_until_async

APP = "tests.apps.callbacks_app:yard"
ENV = {
    "RUNYARD_OUTBOUND_ALLOW": "127.0.0.0/8",
    "RUNYARD_CALLBACK_RETRY_SCALE": "0.02",  # 0.1 s, 0.6 s, 2.4 s, 12 s, ...
    "RUNYARD_CALLBACK_LEASE_S": "2",
}


@pytest.fixture(autouse=True)
def _allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RUNYARD_WEBHOOK_SECRET", raising=False)


@dataclass(frozen=True)
class Shared:
    db_url: str
    worker: WorkerProcess


@pytest.fixture(params=BACKENDS, scope="module")
def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Shared]:
    """One database and worker process per backend for the tests that do not kill their
    worker (each test has its own runs, URLs and receiver)."""
    folder = tmp_path_factory.mktemp(f"callbacks-{request.param}")
    with fresh_database(str(request.param), folder, pg_template) as url:
        worker = WorkerProcess(APP, url, env=ENV, log=folder / "worker.log").start()
        try:
            yield Shared(url, worker)
        finally:
            worker.terminate(timeout=15)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _worker(db_url: str, tmp_path: Path, name: str, procs: list[WorkerProcess]) -> WorkerProcess:
    w = WorkerProcess(APP, db_url, env=ENV, log=tmp_path / f"{name}.log").start()
    procs.append(w)
    return w


async def _start(yard: Runyard, **kwargs: Any) -> str:
    async def started() -> str:
        return (await yard.start("emitter", **kwargs)).id

    return await wait_until_async(
        started, timeout=20, ignoring=(WorkflowNotFound,), what="run started (worker up)"
    )


async def _settled(yard: Runyard, run_id: str) -> list[Delivery] | NotYet:
    ds = await yard.list_deliveries(run_id)
    done = ds and all(d.state != "pending" for d in ds)
    finals = [d for d in ds if d.kind == "finished"]
    return ds if done and finals else NotYet([(d.kind, d.state) for d in ds])


def _verified(secret: str, r: Receiver) -> list[dict[str, Any]]:
    """Every body received with a 2xx, verified by standardwebhooks (and by our SDK)."""
    wh, ours = Webhook(secret), WebhookVerifier(secret)
    out = []
    for got in r.snapshot():
        if got.status != 200:
            continue
        body = wh.verify(got.body, got.headers)
        assert ours.verify(got.body, got.headers) == body
        out.append(body)
    return out


def test_progressive_signed_many_inputs(shared: Shared, receiver: Receiver) -> None:
    yard = make_yard(shared.db_url)

    async def main() -> None:
        secret = (await yard.webhook_secrets())[0]
        assert secret.startswith("whsec_")
        run_id = await _start(
            yard,
            inputs=[
                {"input": {"count": 150, "tag": "a"}, "custom_data": {"who": "a", "n": [1]}},
                {"input": {"count": 3, "tag": "b", "pause": 0.05}, "custom_data": "bee"},
                {"input": {"count": 0, "tag": "c"}},
            ],
            callback={"url": receiver.url(), "headers": {"x-tenant": "t1"}},
        )
        ds = await wait_until_async(
            lambda: _settled(yard, run_id), timeout=30, what="every message delivered"
        )
        assert {d.state for d in ds} == {"delivered"}
        assert all(d.attempts and d.attempts[-1]["status_code"] == 200 for d in ds)
        bodies = _verified(secret, receiver)
        assert all(r.headers["x-tenant"] == "t1" for r in receiver.snapshot())
        custom = {0: {"who": "a", "n": [1]}, 1: "bee", 2: None}
        for b in bodies:
            assert b["run_id"] == run_id
            assert b["custom_data"] == custom[b["input_index"]]
        for idx, count in ((0, 150), (1, 3), (2, 0)):
            batches = [
                b["outputs"]
                for b in bodies
                if b["type"] == "run.outputs" and b["input_index"] == idx
            ]
            assert all(1 <= len(x) <= 100 for x in batches)
            ns = sorted(o["data"]["n"] for batch in batches for o in batch)
            assert ns == list(range(count))
            (final,) = [
                b for b in bodies if b["type"] == "run.finished" and b["input_index"] == idx
            ]
            assert final["status"] == "SUCCEEDED"
            assert final["result"] == {"emitted": count, "tag": "abc"[idx]}
            assert final["error"] is None
            assert final["credits"] == {"total": 153.0, "by_action": {"emit": 153.0}}

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_receiver_down_then_back_duplicates_share_their_id(shared: Shared) -> None:
    yard = make_yard(shared.db_url)
    receiver = Receiver().start()
    receiver.stop()  # its port, closed: connections refused

    async def main() -> None:
        secret = (await yard.webhook_secrets())[0]
        run_id = await _start(
            yard,
            input={"count": 5, "pause": 0.1, "tag": "d"},
            custom_data={"k": 1},
            callback={"url": receiver.url()},
        )

        async def failed_twice() -> bool:
            ds = await yard.list_deliveries(run_id)
            return any(len(d.attempts) >= 2 for d in ds)

        await wait_until_async(failed_twice, timeout=20, what="two failed attempts")
        ds = await yard.list_deliveries(run_id)
        failed = [a for d in ds for a in d.attempts]
        assert all(a["status_code"] is None and a["error"] for a in failed)
        assert any(d.state == "pending" and d.next_attempt_at for d in ds)
        # back, but it answers 503 to the first request for each path, then 200
        receiver.answer = lambda path, n: (503, {}) if n == 0 else (200, {})
        receiver.start()
        ds = await wait_until_async(
            lambda: _settled(yard, run_id), timeout=30, what="every message delivered"
        )
        assert {d.state for d in ds} == {"delivered"}
        got = receiver.snapshot()
        ids = [r.headers["webhook-id"] for r in got]
        assert sorted({d.message_id for d in ds}) == sorted(set(ids))
        assert len(ids) > len(set(ids))  # the 503 answered one message: it came twice
        for mid in set(ids):
            same = [r for r in got if r.headers["webhook-id"] == mid]
            assert len({r.body for r in same}) == 1
        bodies = _verified(secret, receiver)
        assert sorted(o["data"]["n"] for b in bodies for o in b.get("outputs", [])) == list(
            range(5)
        )
        assert all(b["custom_data"] == {"k": 1} for b in bodies)

    try:
        asyncio.run(main())
    finally:
        receiver.stop()
        yard.close()


def test_410_stops_and_a_redirect_is_not_followed(shared: Shared, receiver: Receiver) -> None:
    yard = make_yard(shared.db_url)
    receiver.answer = lambda path, n: {
        "/gone": (410, {}),
        "/moved": (302, {"location": receiver.url("/target")}),
    }.get(path, (200, {}))

    async def main() -> None:
        gone = await _start(
            yard, input={"count": 6, "pause": 0.2}, callback={"url": receiver.url("/gone")}
        )
        moved = await _start(yard, input={"count": 0}, callback={"url": receiver.url("/moved")})

        async def stopped() -> list[Delivery] | NotYet:
            run = await yard.get_run(gone)
            ds = await yard.list_deliveries(gone)
            ok = run.status == "SUCCEEDED" and ds and all(d.state == "stopped" for d in ds)
            return ds if ok else NotYet((run.status, [(d.kind, d.state) for d in ds]))

        # the run goes on emitting after the 410; no message is sent to /gone again, and
        # its final one is not even written
        await wait_until_async(stopped, timeout=20, what="run ended, all stopped")

        # messages already in flight when the first 410 came may have had their own 410
        # (each recorded once its answer is in); none is sent again
        async def recorded() -> list[Delivery] | NotYet:
            ds = await yard.list_deliveries(gone)
            tried = [a for d in ds for a in d.attempts]
            sent = [r for r in receiver.snapshot() if r.path == "/gone"]
            return ds if len(tried) == len(sent) else NotYet((len(tried), len(sent)))

        ds = await wait_until_async(recorded, timeout=20, what="every request recorded")
        tried = [a for d in ds for a in d.attempts]
        assert tried and all(a["status_code"] == 410 for a in tried)
        assert all(len(d.attempts) <= 1 and d.state == "stopped" for d in ds)
        stays_true(
            lambda: len([r for r in receiver.snapshot() if r.path == "/gone"]) == len(tried),
            for_s=1.0,
            what="no request to /gone but those the 410s answered",
        )
        assert len(await yard.list_deliveries(gone)) == len(ds)

        async def redirected() -> list[Delivery] | NotYet:
            ds = await yard.list_deliveries(moved)
            ok = ds and all(len(d.attempts) >= 2 for d in ds)
            return ds if ok else NotYet([(d.kind, len(d.attempts)) for d in ds])

        ds = await wait_until_async(redirected, timeout=20, what="the 302 retried")
        for d in ds:
            assert d.state == "pending" and d.last_status == 302
            assert "not followed" in (d.last_error or "")
        assert not [r for r in receiver.snapshot() if r.path == "/target"]

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_a_410_stops_the_schedules_callback(shared: Shared, receiver: Receiver) -> None:
    """A schedule's callback URL answering 410 stops the messages of the fire's run to it
    and removes the callback from the schedule: the next fires' runs report nowhere. Another
    schedule's callback (answering 200) is untouched."""
    yard = make_yard(shared.db_url)
    receiver.answer = lambda path, n: (410, {}) if path == "/gone" else (200, {})

    async def main() -> None:
        await _start(yard, input={"count": 0})  # the worker is up (emitter published)
        for sid in ("gone", "kept"):
            spec = ScheduleSpec(
                cron="0 0 1 1 *",  # (fired by trigger_schedule here)
                workflow="emitter",
                input={"count": 3, "pause": 0.05},
                callback={"url": receiver.url(f"/{sid}")},
            )
            await yard.create_schedule(spec, schedule_id=sid)

        async def fire(sid: str) -> str:
            run_id = (await yard.trigger_schedule(sid)).run_id
            assert run_id is not None
            await wait_until_async(
                lambda: _ended(yard, run_id), timeout=20, what=f"run of {sid} ended"
            )
            return run_id

        first = await fire("gone")
        kept_run = await fire("kept")

        async def stopped() -> list[Delivery] | NotYet:
            spec = (await yard.get_schedule("gone")).spec
            ds = await yard.list_deliveries(first)
            ok = spec.callback is None and ds and all(d.state == "stopped" for d in ds)
            return ds if ok else NotYet((spec.callback, [(d.kind, d.state) for d in ds]))

        ds = await wait_until_async(stopped, timeout=20, what="the schedule's callback removed")
        assert any(a["status_code"] == 410 for d in ds for a in d.attempts)
        await wait_until_async(
            lambda: _settled(yard, kept_run), timeout=20, what="the other schedule's delivered"
        )
        assert (await yard.get_schedule("kept")).spec.callback == {"url": receiver.url("/kept")}
        gone_before = len([r for r in receiver.snapshot() if r.path == "/gone"])
        second = await fire("gone")  # after the 410: its run carries no callback
        assert await yard.list_deliveries(second) == []
        again = await fire("kept")
        await wait_until_async(
            lambda: _settled(yard, again), timeout=20, what="the other schedule still reports"
        )
        assert len([r for r in receiver.snapshot() if r.path == "/gone"]) == gone_before
        assert await yard.list_deliveries(second) == []

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_retry_after_is_honoured(shared: Shared, receiver: Receiver) -> None:
    """A 503 with ``Retry-After: 2`` (seconds) puts the next attempt 2 s later, not after
    the shortened backoff (0.1 s in these tests); then the message is delivered."""
    yard = make_yard(shared.db_url)
    receiver.answer = lambda path, n: (503, {"Retry-After": "2"}) if n == 0 else (200, {})

    async def main() -> None:
        run_id = await _start(yard, input={"count": 0}, callback={"url": receiver.url()})
        (d,) = await wait_until_async(
            lambda: _settled(yard, run_id), timeout=30, what="delivered after its Retry-After"
        )
        assert d.state == "delivered"
        first, second = d.attempts
        assert first["status_code"] == 503 and second["status_code"] == 200
        assert first["next_attempt_at"] - first["at"] == pytest.approx(2.0, abs=0.05)
        arrivals = [r.at for r in receiver.snapshot()]
        assert len(arrivals) == 2 and arrivals[1] - arrivals[0] >= 1.9

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_retry_after_values() -> None:
    """Seconds or an HTTP date, at most a day; anything else is no Retry-After."""
    now = 1_700_000_000.0
    assert retry_after({"retry-after": "7"}, now) == 7.0
    assert retry_after({"retry-after": "-3"}, now) == 0.0
    assert retry_after({"retry-after": "999999"}, now) == RETRY_AFTER_MAX_S
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after({"retry-after": date}, now) == pytest.approx(90.0)
    assert retry_after({"retry-after": "soon"}, now) is None
    assert retry_after({}, now) is None


async def _ended(yard: Runyard, run_id: str) -> bool:
    return (await yard.get_run(run_id)).status in ("SUCCEEDED", "FAILED")


def test_worker_sigkilled_mid_delivery_loses_nothing(
    db_url: str, tmp_path: Path, worker_procs: list[WorkerProcess], receiver: Receiver
) -> None:
    yard = make_yard(db_url)
    receiver.delay_s = 1.0  # every answer takes a second: deliveries are in flight
    a = _worker(db_url, tmp_path, "a", worker_procs)

    async def main() -> None:
        run_id = await _start(
            yard,
            inputs=[{"input": {"count": 2, "tag": i}, "custom_data": i} for i in range(4)],
            callback={"url": receiver.url()},
        )
        await wait_until_async(
            lambda: len(receiver.snapshot()) >= 1 or NotYet(0),
            timeout=20,
            what="first message arriving",
        )
        a.kill()  # mid-stream: other messages are claimed by it, in flight or not sent
        _worker(db_url, tmp_path, "b", worker_procs)
        receiver.delay_s = 0.0
        ds = await wait_until_async(
            lambda: _settled(yard, run_id), timeout=40, what="every message delivered"
        )
        assert {d.state for d in ds} == {"delivered"}
        got = {r.headers["webhook-id"] for r in receiver.snapshot() if r.status == 200}
        assert {d.message_id for d in ds} <= got
        assert len([d for d in ds if d.kind == "finished"]) == 4

    try:
        asyncio.run(main())
    finally:
        yard.close()


def test_callback_url_checked_at_create(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNYARD_OUTBOUND_ALLOW")
    yard = make_yard(db_url)

    @yard.workflow
    async def plain(ctx: Any, x: int) -> int:
        return x

    async def main() -> None:
        for cb, field in (
            ({"url": "http://127.0.0.1:9/x"}, "callback.url"),
            ({"url": "http://0x7f.1/x"}, "callback.url"),
            ({"url": "ftp://example.com/"}, "callback.url"),
            ({"headers": {}}, "callback.url"),
            ({"url": "https://example.com/", "headers": {"a": 1}}, "callback.headers"),
        ):
            with pytest.raises(InvalidInput) as err:
                await yard.start(plain, 1, callback=cb)
            assert field in str(err.value.details), (cb, err.value.details)

    try:
        asyncio.run(main())
    finally:
        yard.close()
