"""A real server and worker (the bundled examples) per backend, and a way to run the CLI
in a subprocess against them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.client.support import Served, cli_env, serve
from tests.conftest import BACKENDS, ROOT

EXAMPLES = {"enrich_companies", "flaky_fetch", "approval", "sync_feed"}


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"cli-{request.param}")
    with serve(str(request.param), folder, pg_template, "runyard.examples:yard", EXAMPLES) as s:
        yield s


def runyard(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m runyard ARGS`` with its output captured (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args],
        env=cli_env(**(env or {})),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def api_env(served: Served) -> dict[str, str]:
    """RUNYARD_URL and RUNYARD_API_KEY for the served server."""
    return {"RUNYARD_URL": served.url, "RUNYARD_API_KEY": served.api_key}
