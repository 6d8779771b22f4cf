"""One real ``runyard server`` and one real worker process (which runs the scheduler) per
backend, shared by the schedule tests of this folder, with keys of each scope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.client.support import Served, serve
from tests.conftest import BACKENDS
from tests.waiting import NotYet, wait_until

APP = "tests.apps.server_app:yard"
WORKFLOWS = {"greet", "sleeper"}


@pytest.fixture(scope="package", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"schedules-{request.param}")
    with serve(str(request.param), folder, pg_template, APP, WORKFLOWS) as s:
        yield s


def api(served: Served, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=served.url, headers={"x-api-key": key or served.api_key}, timeout=30
    )


def wait_run(client: httpx.Client, run_id: str, status: str = "SUCCEEDED") -> dict[str, Any]:
    """Until run ``run_id`` has ``status``; the run then."""

    def ended() -> dict[str, Any] | NotYet:
        r = client.get(f"/v1/runs/{run_id}/status")
        body: dict[str, Any] = r.json()
        return body if r.status_code == 200 and body["status"] == status else NotYet(body)

    return wait_until(ended, timeout=30, what=f"run {run_id} {status}")
