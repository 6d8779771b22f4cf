"""``/v1/schedules`` over a real server and worker, on both backends: every action over
HTTP and the SDK (sync and async), each 422 naming its field, scopes, and the runs of a
schedule listed by ``GET /v1/runs?schedule_id=``."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runyard.client import AsyncClient, Client
from runyard.errors import InvalidInput, NotFound
from tests.client.support import Served
from tests.schedules.conftest import api, wait_run
from tests.waiting import NotYet, wait_until

HOURLY = "0 * * * *"


def _sid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _hours_ago(n: int) -> datetime:
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return top - timedelta(hours=n)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_crud_and_every_action_over_http(served: Served) -> None:
    sid = _sid("http")
    body = {
        "id": sid,
        "workflow": "greet",
        "input": {"name": "sched"},
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
        "retries": 1,
        "priority": 3,
    }
    with api(served) as client:
        r = client.post("/v1/schedules", json=body)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/v1/schedules/{sid}"
        s = r.json()
        assert s["description"] == "At 09:00, Monday through Friday"
        assert s["options"] == {"retries": 1, "priority": 3}
        assert (s["overlap"], s["catchup_window"], s["paused"]) == ("skip", 60.0, False)
        assert s["counters"] == {"fired": 0, "skipped": 0, "failed": 0}
        # the next 10 fire times: 09:00 in Paris (07:00 or 08:00 UTC), weekdays, in order
        nxt = [_parse(t) for t in s["next_fires"]]
        assert len(nxt) == 10 and nxt == sorted(nxt) and nxt[0] == _parse(s["next_fire_at"])
        assert all(t.hour in (7, 8) and t.minute == 0 and t.weekday() < 5 for t in nxt)

        again = client.post("/v1/schedules", json=body)
        assert again.status_code == 200 and again.json()["id"] == sid

        listed = client.get("/v1/schedules", params={"limit": 100}).json()
        assert sid in [item["id"] for item in listed["items"]]
        shown = client.get(f"/v1/schedules/{sid}").json()
        assert shown["next_fires"] == s["next_fires"] and shown["recent_fires"] == []

        # update (PATCH and POST .../update): from the next fire on
        r = client.patch(f"/v1/schedules/{sid}", json={"cron": HOURLY, "timezone": "UTC"})
        assert r.status_code == 200, r.text
        assert r.json()["description"] == "Every hour"
        assert all(_parse(t).minute == 0 for t in r.json()["next_fires"])
        r = client.post(f"/v1/schedules/{sid}/update", json={"jitter": 2, "input": {"name": "b"}})
        assert (r.json()["jitter"], r.json()["input"]) == (2.0, {"name": "b"})

        # pause with a note, resume
        r = client.post(f"/v1/schedules/{sid}/pause", json={"note": "maintenance"})
        assert (r.json()["paused"], r.json()["note"]) == (True, "maintenance")
        assert client.get(f"/v1/schedules/{sid}").json()["paused"] is True
        r = client.post(f"/v1/schedules/{sid}/resume")
        assert r.status_code == 200 and r.json()["paused"] is False
        assert r.json()["next_fire_at"] is not None

        # trigger now: a run of the schedule, listed by GET /v1/runs?schedule_id=
        fire = client.post(f"/v1/schedules/{sid}/trigger", json={}).json()
        assert fire["kind"] == "trigger" and fire["run_id"], fire
        run = wait_run(client, fire["run_id"])
        assert run["status"] == "SUCCEEDED"
        assert client.get(f"/v1/runs/{fire['run_id']}").json()["schedule_id"] == sid

        # backfill of the last 3 hours: 3 fires, asked twice starts nothing more
        rng = {"start": _hours_ago(3).isoformat(), "end": _hours_ago(0).isoformat()}
        done = client.post(f"/v1/schedules/{sid}/backfill", json=rng).json()
        assert (done["created"], done["existing"], len(done["fires"])) == (3, 0, 3), done
        assert {f["kind"] for f in done["fires"]} == {"backfill"}
        twice = client.post(f"/v1/schedules/{sid}/backfill", json=rng).json()
        assert (twice["created"], twice["existing"]) == (0, 3), twice
        backfilled = {f["run_id"] for f in done["fires"]}
        assert None not in backfilled
        for run_id in backfilled:
            wait_run(client, str(run_id))

        # (a run of the cron itself, should the test cross the top of an hour, is left out)
        runs = client.get("/v1/runs", params={"schedule_id": sid, "limit": 100}).json()
        assert backfilled | {fire["run_id"]} <= {r["id"] for r in runs["items"]}
        assert all(r["schedule_id"] == sid for r in runs["items"])
        other = client.get("/v1/runs", params={"schedule_id": "no-such", "limit": 5}).json()
        assert other["items"] == []

        # the detail view: the last fires, newest first, with their run ids and outcomes
        def counted() -> dict[str, Any] | NotYet:
            got: dict[str, Any] = client.get(f"/v1/schedules/{sid}").json()
            return got if got["counters"]["fired"] >= 4 else NotYet(got["counters"])

        shown = wait_until(counted, timeout=10, what="4 fires counted")
        recent = shown["recent_fires"]
        assert [_parse(f["fire_at"]) for f in recent] == sorted(
            (_parse(f["fire_at"]) for f in recent), reverse=True
        )
        ours = {f["run_id"]: f for f in recent if f["kind"] in ("trigger", "backfill")}
        assert set(ours) == backfilled | {fire["run_id"]}
        assert {f["outcome"] for f in ours.values()} == {"SUCCEEDED"}

        # delete (DELETE and POST .../delete): its runs stay
        assert client.delete(f"/v1/schedules/{sid}").status_code == 204
        r = client.get(f"/v1/schedules/{sid}")
        assert r.status_code == 404 and r.json()["error"]["code"].endswith("not_found")
        assert client.get(f"/v1/runs/{fire['run_id']}").status_code == 200
        assert client.delete(f"/v1/schedules/{sid}").status_code == 404
        other_id = client.post(
            "/v1/schedules", json={"workflow": "greet", "input": {"name": "x"}, "cron": HOURLY}
        ).json()["id"]
        assert client.post(f"/v1/schedules/{other_id}/delete").status_code == 204
        assert client.get(f"/v1/schedules/{other_id}").status_code == 404


def test_the_scheduler_fires_on_its_own(served: Served) -> None:
    """A every-second cron fires through the worker's scheduler: its runs are listed by
    schedule id and shown in the schedule's recent fires."""
    sid = _sid("tick")
    with api(served) as client:
        r = client.post(
            "/v1/schedules",
            json={"id": sid, "workflow": "greet", "input": {"name": "t"}, "cron": "* * * * * *"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["description"] == "Every second"

        def two_runs() -> list[dict[str, Any]] | NotYet:
            page = client.get("/v1/runs", params={"schedule_id": sid, "limit": 100}).json()
            done = [r for r in page["items"] if r["status"] == "SUCCEEDED"]
            return done if len(done) >= 2 else NotYet(page["items"])

        runs = wait_until(two_runs, timeout=20, what="two fires of the schedule succeed")
        client.post(f"/v1/schedules/{sid}/pause")
        recent = client.get(f"/v1/schedules/{sid}").json()["recent_fires"]
        assert {r["id"] for r in runs} <= {f["run_id"] for f in recent}
        assert all(f["kind"] == "cron" for f in recent)
        assert client.delete(f"/v1/schedules/{sid}").status_code == 204


def _past() -> str:
    return (datetime.now(UTC) - timedelta(minutes=5)).isoformat()


BAD: list[tuple[str, dict[str, Any]]] = [
    ("cron", {"workflow": "greet", "cron": "61 * * * *"}),
    ("cron", {"workflow": "greet", "cron": "* * *"}),  # refused by the schema's pattern
    ("timezone", {"workflow": "greet", "cron": HOURLY, "timezone": "Mars/Olympus"}),
    ("at", {"workflow": "greet", "at": "PAST"}),
    ("catchup_window", {"workflow": "greet", "cron": HOURLY, "catchup_window": 5}),
    ("workflow", {"workflow": "no_such_workflow", "cron": HOURLY}),
    ("task_id", {"task_id": "no-such-task", "cron": HOURLY}),
    ("overlap", {"workflow": "greet", "cron": HOURLY, "overlap": "sometimes"}),
    ("remaining_actions", {"workflow": "greet", "cron": HOURLY, "remaining_actions": 0}),
]


@pytest.mark.parametrize(("field", "body"), BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_bad_input_is_a_422_naming_the_field(
    served: Served, field: str, body: dict[str, Any]
) -> None:
    if body.get("at") == "PAST":
        body = {**body, "at": _past()}
    with api(served) as client:
        r = client.post("/v1/schedules", json=body)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_input"
        named = {str(d.get("field", "")).split(".")[-1] for d in error["details"]}
        assert field in named, error
        assert error["message"], error


def test_the_openapi_schema_states_the_rules(served: Served) -> None:
    with api(served) as client:
        doc = client.get("/openapi.json").json()
    props = doc["components"]["schemas"]["ScheduleIn"]["properties"]
    assert props["catchup_window"]["minimum"] == 10
    assert "pattern" in props["cron"]["anyOf"][0]
    assert "IANA" in props["timezone"]["description"]
    assert "past" in props["at"]["description"]
    paths = doc["paths"]
    assert {"get", "patch", "delete"} <= set(paths["/v1/schedules/{schedule_id}"])
    for action in ("update", "pause", "resume", "delete", "trigger", "backfill"):
        assert "post" in paths[f"/v1/schedules/{{schedule_id}}/{action}"], action


def test_a_read_scoped_key_reads_but_changes_nothing(served: Served) -> None:
    sid = _sid("scope")
    with api(served) as admin:
        body = {"id": sid, "workflow": "greet", "input": {"name": "s"}, "cron": HOURLY}
        assert admin.post("/v1/schedules", json=body).status_code == 201
    with api(served, served.make_key("read")) as reader:
        assert reader.get("/v1/schedules").status_code == 200
        assert reader.get(f"/v1/schedules/{sid}").status_code == 200
        rng = {"start": _hours_ago(2).isoformat(), "end": _hours_ago(1).isoformat()}
        for method, path, payload in (
            ("POST", "/v1/schedules", {**body, "id": _sid("no")}),
            ("PATCH", f"/v1/schedules/{sid}", {"jitter": 1}),
            ("POST", f"/v1/schedules/{sid}/update", {"jitter": 1}),
            ("POST", f"/v1/schedules/{sid}/pause", {}),
            ("POST", f"/v1/schedules/{sid}/resume", {}),
            ("POST", f"/v1/schedules/{sid}/trigger", {}),
            ("POST", f"/v1/schedules/{sid}/backfill", rng),
            ("POST", f"/v1/schedules/{sid}/delete", None),
            ("DELETE", f"/v1/schedules/{sid}", None),
        ):
            r = reader.request(method, path, json=payload)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "forbidden"
        shown = reader.get(f"/v1/schedules/{sid}").json()
        assert shown["paused"] is False and shown["jitter"] == 0
        assert shown["counters"]["fired"] == 0


def test_the_sdk_sync(served: Served) -> None:
    sid = _sid("sdk")
    with Client(served.url, served.api_key) as client:
        s = client.create_schedule(
            "greet", {"name": "sdk"}, cron=HOURLY, schedule_id=sid, overlap="allow_all"
        )
        assert (s.id, s.overlap, s.description) == (sid, "allow_all", "Every hour")
        assert s.next_fires is not None and len(s.next_fires) == 10
        assert sid in [x.id for x in client.iter_schedules(limit=1)]
        assert client.get_schedule(sid).counters.fired == 0
        s = client.update_schedule(sid, cron="30 * * * *", remaining_actions=5)
        assert s.cron == "30 * * * *" and s.remaining_actions == 5
        assert client.pause_schedule(sid, "why not").note == "why not"
        assert client.resume_schedule(sid).paused is False
        fire = client.trigger_schedule(sid)
        assert fire.run_id is not None and fire.kind == "trigger"
        assert client.wait_for_completion(fire.run_id, timeout=30).status == "SUCCEEDED"
        assert [r.id for r in client.iter_runs(schedule_id=sid)] == [fire.run_id]
        done = client.backfill_schedule(sid, _hours_ago(2), _hours_ago(0))
        assert (done.created, done.existing) == (2, 0)
        with pytest.raises(InvalidInput) as bad:
            client.create_schedule("greet", cron=HOURLY, timezone="Nowhere/Else")
        assert "timezone" in str(bad.value)
        client.delete_schedule(sid)
        with pytest.raises(NotFound):
            client.get_schedule(sid)


def test_the_sdk_async(served: Served) -> None:
    sid = _sid("aio")

    async def scenario() -> None:
        async with AsyncClient(served.url, served.api_key) as client:
            s = await client.create_schedule(
                "greet", {"name": "aio"}, at=datetime.now(UTC) + timedelta(days=1), schedule_id=sid
            )
            assert s.at is not None and s.cron is None and s.description is None
            assert [x.id async for x in client.iter_schedules() if x.id == sid] == [sid]
            assert (await client.update_schedule(sid, jitter=1.5)).jitter == 1.5
            assert (await client.pause_schedule(sid)).paused is True
            assert (await client.resume_schedule(sid)).paused is False
            fire = await client.trigger_schedule(sid, overlap="allow_all")
            assert fire.run_id is not None
            run = await client.wait_for_completion(fire.run_id, timeout=30)
            assert run.schedule_id == sid
            await client.delete_schedule(sid)
            with pytest.raises(NotFound):
                await client.get_schedule(sid)

    asyncio.run(scenario())
