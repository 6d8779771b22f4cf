"""Schemathesis over /openapi.json against the real server, with a valid write-scope
key: valid and invalid requests for every operation, seeded so a failure replays. No
answer is a 5xx or a status the document does not list, and afterwards every run in the
database was created by an accepted request (a refused payload wrote nothing)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runyard.store import RunFilter, open_store
from runyard.store.dbexec import DbExecutor
from tests.server.conftest import Keys, ServerProcess, client, publish_without_worker

#: Cases per operation and mode. RUNYARD_TEST_FUZZ_SCALE multiplies them and
#: RUNYARD_TEST_FUZZ_RANDOM=1 draws new ones, for a longer hunt by hand.
_SCALE = int(os.environ.get("RUNYARD_TEST_FUZZ_SCALE", "1"))
EXAMPLES = {GenerationMode.POSITIVE: 8 * _SCALE, GenerationMode.NEGATIVE: 5 * _SCALE}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    response_headers_conformance,
    content_type_conformance,
]
#: Operations whose 2xx answer may have created a run.
CREATING = (
    "/v1/runs",
    "/v1/runs/{run_id}/fork",
    "/v1/tasks/{task_id}/execute",
    "/v1/schedules/{schedule_id}/trigger",
    "/v1/schedules/{schedule_id}/backfill",
)
#: Real workflow names for generated bodies (random names would only ever get 404).
WORKFLOWS = st.sampled_from([None, "greet", "sleeper", "emitter", "counter"])
#: No worker runs here: waits are cut short so that valid live calls answer 202 quickly.
MAX_WAIT_S = 0.3


def _created_run_ids(body: Any) -> list[str]:
    if isinstance(body, dict):
        if isinstance(body.get("run"), dict):
            return [str(body["run"]["id"])]
        if isinstance(body.get("fires"), list):  # a schedule's backfill
            return [str(f["run_id"]) for f in body["fires"] if f.get("run_id")]
        if "fire_at" in body:  # a schedule's trigger
            return [str(body["run_id"])] if body.get("run_id") else []
        if "id" in body:
            return [str(body["id"])]
    return []


def _seed(api: httpx.Client) -> dict[str, dict[str, str]]:
    """Existing records for generated requests to hit, by method: a finished run for
    reads (its event stream ends at once), a live one for the transitions."""
    for body in (
        {"workflow": "greet", "input": {"name": "done"}, "run_id": "seed-done"},
        {"workflow": "greet", "input": {"name": "live"}, "run_id": "seed-live"},
    ):
        assert api.post("/v1/runs", json=body).status_code == 201
    assert api.post("/v1/runs/seed-done/cancel").status_code == 200
    task = {"id": "seed-task", "workflow": "greet", "input": {"name": "t"}}
    assert api.post("/v1/tasks", json=task).status_code == 201
    # (a yearly cron: the server's scheduler does not fire it during the test)
    schedule = {
        "id": "seed-sched",
        "workflow": "greet",
        "input": {"name": "s"},
        "cron": "0 0 1 1 *",
    }
    assert api.post("/v1/schedules", json=schedule).status_code == 201
    reads = {
        "run_id": "seed-done",
        "task_id": "seed-task",
        "name": "greet",
        "event_id": "seed",
        "schedule_id": "seed-sched",
        "delivery_id": "1",  # (none exists: the redeliver of an unknown one is a 404)
    }
    return {"get": reads, "other": {**reads, "run_id": "seed-live"}}


def _bound_waits(case: Any) -> None:
    if isinstance(case.body, dict) and case.body.get("mode") == "live":
        case.body["wait_timeout"] = MAX_WAIT_S
    if isinstance(case.query, dict) and isinstance(case.query.get("timeout"), int | float):
        case.query["timeout"] = min(case.query["timeout"], MAX_WAIT_S)


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    strategy: Any,
    server: ServerProcess,
    headers: dict[str, str],
    accepted_runs: set[str],
    accepted_schedules: set[str],
) -> int:
    """Run ``EXAMPLES[mode]`` generated requests of ``operation``; how many were sent."""
    calls = 0

    @given(case=strategy, workflow=WORKFLOWS)
    @settings(
        # Triggers get more cases: most generated ones are refused, and the accepted
        # ones are what the final check counts on.
        max_examples=EXAMPLES[mode] * (3 if operation.path in CREATING else 1),
        deadline=None,
        derandomize=not os.environ.get("RUNYARD_TEST_FUZZ_RANDOM"),
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any, workflow: str | None) -> None:
        nonlocal calls
        calls += 1
        body = case.body
        positive = mode is GenerationMode.POSITIVE
        # A trigger names a workflow or a url (an HTTP target); a generated one that names
        # neither is given one of the published workflows, as one that names one is.
        trigger = isinstance(body, dict) and ("workflow" in body or "url" not in body)
        if workflow and positive and trigger and operation.path == "/v1/runs":
            body["workflow"] = workflow
        if workflow and positive and isinstance(body, dict) and "workflow" in body:
            body["workflow"] = workflow
            if "task_id" in body:
                body["task_id"] = "seed-task"
        _bound_waits(case)
        response = case.call(base_url=server.url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)
        created = operation.path in CREATING and case.method == "POST"
        if created and 200 <= response.status_code < 300:
            accepted_runs.update(_created_run_ids(response.json()))
        # the runs a created schedule fires are the scheduler's, not a request's
        if (
            operation.path == "/v1/schedules"
            and case.method == "POST"
            and 200 <= response.status_code < 300
        ):
            accepted_schedules.add(str(response.json()["id"]))

    try:
        check()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no parameters)
    except Exception as exc:
        where = f"{operation.method.upper()} {operation.path} ({mode})"
        pytest.fail(f"{where}: {exc}\n{server.logs()[-3000:]}")
    return calls


def test_schemathesis(db_url: str, server: ServerProcess, api_keys: Keys) -> None:
    publish_without_worker(db_url)
    with client(server, api_keys.write) as api:
        seeds = _seed(api)
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    headers = {"x-api-key": api_keys.write}
    accepted_runs = {"seed-done", "seed-live"}
    accepted_schedules = {"seed-sched"}
    calls = 0
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # (the schema itself is broken)
        operations.append(result.ok())
    assert len(operations) >= 25
    for operation in operations:
        for mode in EXAMPLES:
            strategy = operation.as_strategy(generation_mode=mode)
            params = {p.name for p in operation.iter_parameters() if p.location == "path"}
            if params and mode is GenerationMode.POSITIVE:
                # Half the cases on records that exist, so more than 404 gets exercised.
                known = seeds["get" if operation.method == "get" else "other"]
                fixed = {name: known[name] for name in params}
                strategy = st.one_of(
                    strategy, operation.as_strategy(generation_mode=mode, path_parameters=fixed)
                )
            calls += _fuzz(
                operation, mode, strategy, server, headers, accepted_runs, accepted_schedules
            )
    assert calls >= 300
    assert len(accepted_runs) > 2  # some generated runs were valid

    ex = DbExecutor(open_store(db_url))
    try:
        page = ex.read_sync(ex.store.list_runs, RunFilter(), None, 100, "desc")
        runs = list(page.items)
        while page.next_cursor:
            page = ex.read_sync(ex.store.list_runs, RunFilter(), page.next_cursor, 100, "desc")
            runs += page.items
        # (the runs the scheduler started for schedules created by accepted requests)
        stored = {r.id for r in runs if r.schedule_id not in accepted_schedules}
    finally:
        ex.close()
    assert stored <= accepted_runs, (
        f"runs written by refused requests: {sorted(stored - accepted_runs)}"
    )
    assert "Traceback" not in server.logs()
