"""One server and worker process per backend for this folder's modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.support import Served, serve
from tests.conftest import BACKENDS

APP_WORKFLOWS = {"emit_many", "listed", "nap", "order", "boom", "waiter", "chatty"}


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[Served]:
    """A real server on a loopback port and a real worker serving tests.apps.client_app,
    on a fresh database of each backend (shared by the tests of one module)."""
    folder = tmp_path_factory.mktemp(f"served-{request.param}")
    app = "tests.apps.client_app:yard"
    with serve(str(request.param), folder, pg_template, app, APP_WORKFLOWS) as s:
        yield s
