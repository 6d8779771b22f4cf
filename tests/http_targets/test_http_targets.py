"""HTTP-target runs (``POST /v1/runs`` with ``url``) on both backends, against a loopback
target server: results, retries, Retry-After, failures, flow control, bulk cancel by
URL prefix over HTTP, the SDK and the CLI, and the outbound guard at create time."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys

import httpx

from runyard.client import AsyncClient, Client
from tests.client.support import Served, ServerProcess, cli_env
from tests.conftest import ROOT
from tests.http_targets.conftest import Target, api, wait_ended


def _tag() -> str:
    return secrets.token_hex(4)


def test_a_200_json_answer_is_the_result(served: Served, target: Target) -> None:
    tag = _tag()
    url = f"{target.url}/ok/{tag}"
    with api(served) as client:
        r = client.post(
            "/v1/runs",
            json={
                "url": {"url": url, "headers": {"x-test": "yes"}, "body": {"n": 1}},
                "custom_data": {"mine": tag},
            },
        )
        assert r.status_code == 201, r.text
        started = r.json()
        assert started["workflow"] == "http" and started["target_url"] == url
        run = wait_ended(client, started["id"])
        assert run["status"] == "SUCCEEDED", run
        result = run["result"]
        assert result["status"] == 200
        assert result["headers"]["content-type"] == "application/json"
        assert result["body"] == {"echo": {"method": "POST", "body": '{"n":1}', "x": "yes"}}
        (hit,) = target.of(f"/ok/{tag}")
        assert hit.headers["content-type"] == "application/json"
        # the list shows what each run calls; text answers stay text
        listed = client.get("/v1/runs", params={"workflow": "http", "limit": 100}).json()
        assert url in {item["target_url"] for item in listed["items"]}
        r = client.post(
            "/v1/runs", json={"url": {"url": f"{target.url}/text/{tag}", "method": "GET"}}
        )
        run = wait_ended(client, r.json()["id"])
        assert run["result"]["body"] == "plain words" and target.of(f"/text/{tag}")[0].body == b""
        # the built-in workflow is listed like any other
        names = {w["name"] for w in client.get("/v1/workflows").json()["items"]}
        assert "http" in names


def test_5xx_is_retried_then_succeeds(served: Served, target: Target) -> None:
    path = f"/flaky/2/{_tag()}"
    with api(served) as client:
        r = client.post("/v1/runs", json={"url": {"url": target.url + path}, "retries": 3})
        run = wait_ended(client, r.json()["id"])
    assert run["status"] == "SUCCEEDED", run
    assert run["result"] == {
        "status": 200,
        "headers": run["result"]["headers"],
        "body": {"attempt": 3},
    }
    assert len(target.of(path)) == 3


def test_429_waits_its_retry_after(served: Served, target: Target) -> None:
    path = f"/limited/{_tag()}"
    with api(served) as client:
        r = client.post("/v1/runs", json={"url": {"url": target.url + path}, "retries": 0})
        run = wait_ended(client, r.json()["id"])
    assert run["status"] == "SUCCEEDED", run  # a 429 spends no retry
    first, second = target.of(path)
    assert second.at - first.at >= 0.95  # Retry-After: 1 (the default backoff is 0.1 s)


def test_a_4xx_fails_at_once(served: Served, target: Target) -> None:
    path = f"/bad/{_tag()}"
    with api(served) as client:
        r = client.post("/v1/runs", json={"url": {"url": target.url + path}, "retries": 5})
        run = wait_ended(client, r.json()["id"])
    assert run["status"] == "FAILED"
    assert run["error"]["code"] == "http_target_rejected"
    assert run["error"]["details"]["response"]["status"] == 404
    assert run["error"]["details"]["response"]["body"] == {"error": "no such thing"}
    assert len(target.of(path)) == 1


def test_failed_after_its_retries_with_the_last_response(served: Served, target: Target) -> None:
    path = f"/down/{_tag()}"
    with api(served) as client:
        r = client.post("/v1/runs", json={"url": {"url": target.url + path}, "retries": 2})
        run = wait_ended(client, r.json()["id"])
    assert run["status"] == "FAILED"
    assert run["error"]["code"] == "http_target_failed"
    last = run["error"]["details"]["response"]
    assert last["status"] == 500 and last["body"] == {"down": 3}
    assert len(target.of(path)) == 3


def test_flow_control_parallelism_one(served: Served, target: Target) -> None:
    tag = _tag()
    key = f"slow/{tag}"
    with api(served) as client:
        ids = [
            client.post(
                "/v1/runs",
                json={
                    "url": {"url": f"{target.url}/slow/{tag}/{i}"},
                    "flow_control": {"key": f"target-{tag}", "parallelism": 1},
                },
            ).json()["id"]
            for i in range(4)
        ]
        runs = [wait_ended(client, run_id) for run_id in ids]
    assert {run["status"] for run in runs} == {"SUCCEEDED"}
    assert target.most[key] == 1
    # the same runs without a limit do overlap (the worker runs 8 at once)
    tag2 = _tag()
    with api(served) as client:
        ids = [
            client.post("/v1/runs", json={"url": {"url": f"{target.url}/slow/{tag2}/{i}"}}).json()[
                "id"
            ]
            for i in range(4)
        ]
        for run_id in ids:
            wait_ended(client, run_id)
    assert target.most[f"slow/{tag2}"] > 1


def _delayed(served: Served, url: str) -> str:
    body = {"url": {"url": url}, "delay": 300}
    with api(served) as http:
        r = http.post("/v1/runs", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def test_cancel_by_url_prefix_over_http_sdk_and_cli(served: Served, target: Target) -> None:
    tag = _tag()
    base = f"{target.url}/ok/{tag}"
    a = [_delayed(served, f"{base}/a/{i}") for i in range(3)]
    b = [_delayed(served, f"{base}/b/{i}") for i in range(2)]
    c = [_delayed(served, f"{base}/c/{i}") for i in range(2)]
    keep = _delayed(served, f"{target.url}/ok/other-{tag}")
    with api(served) as client:
        r = client.post("/v1/runs/cancel", json={"url_prefix": f"{base}/a/"})
        assert r.status_code == 200, r.text
        assert sorted(r.json()["canceled"]) == sorted(a)
    with Client(served.url, api_key=served.api_key) as sdk:
        assert sorted(sdk.bulk_cancel(url_prefix=f"{base}/b/").canceled) == sorted(b)

    async def via_async() -> list[str]:
        async with AsyncClient(served.url, api_key=served.api_key) as aclient:
            return (await aclient.bulk_cancel(url_prefix=f"{base}/zzz")).canceled

    assert asyncio.run(via_async()) == []
    out = subprocess.run(
        [sys.executable, "-m", "runyard", "runs", "cancel", "--url-prefix", f"{base}/c/", "--json"],
        env=cli_env(RUNYARD_URL=served.url, RUNYARD_API_KEY=served.api_key),
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)["canceled"]) == sorted(c)
    with api(served) as client:
        for run_id in [*a, *b, *c]:
            assert client.get(f"/v1/runs/{run_id}/status").json()["status"] == "CANCELED"
        assert client.get(f"/v1/runs/{keep}/status").json()["status"] == "SCHEDULED"
        client.post(f"/v1/runs/{keep}/cancel")


def test_cli_run_target(served: Served, target: Target) -> None:
    tag = _tag()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "runyard",
            "run",
            "--target",
            f"{target.url}/ok/{tag}",
            "--method",
            "put",
            "--header",
            "X-Test: cli",
            "--data",
            '{"from": "cli"}',
            "--wait",
            "--json",
        ],
        env=cli_env(RUNYARD_URL=served.url, RUNYARD_API_KEY=served.api_key),
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "SUCCEEDED"
    assert run["result"]["body"]["echo"] == {"method": "PUT", "body": '{"from":"cli"}', "x": "cli"}


def test_bad_bodies_are_named(served: Served, target: Target) -> None:
    with api(served) as client:
        r = client.post("/v1/runs", json={"input": 1})
        assert r.status_code == 422
        assert {"workflow", "url"} <= {d["field"] for d in r.json()["error"]["details"]}
        r = client.post("/v1/runs", json={"workflow": "greet", "url": {"url": target.url}})
        assert r.status_code == 422
        assert {"workflow", "url"} <= {d["field"] for d in r.json()["error"]["details"]}
        r = client.post("/v1/runs", json={"url": {"url": target.url}, "input": 1})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "input"
        r = client.post("/v1/runs", json={"url": {"url": target.url, "method": "FETCH"}})
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "url.method"
        r = client.post("/v1/runs", json={"url": {"url": "ftp://example.com/x"}})
        assert r.status_code == 422, r.text
        assert "url.url" in r.text


def test_loopback_refused_without_the_operator_setting(served: Served, target: Target) -> None:
    plain = ServerProcess(served.db_url, served.log_dir / "plain.log", served.api_key)
    plain.start()
    spellings = (f"{target.url}/ok/x", "http://127.1:9/x", "http://[::1]:9/", "http://localhost./")
    try:
        with httpx.Client(
            base_url=plain.url, headers={"x-api-key": served.api_key}, timeout=30
        ) as client:
            for url in spellings:
                r = client.post("/v1/runs", json={"url": {"url": url}})
                assert r.status_code == 422, (url, r.text)
                assert "url.url" in json.dumps(r.json()["error"]), r.text
            total = client.get("/v1/runs", params={"workflow": "http", "limit": 100}).json()
            assert all(item["target_url"] not in spellings for item in total["items"])
    finally:
        plain.stop()
