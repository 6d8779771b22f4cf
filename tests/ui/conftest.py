"""The dashboard in a real browser: one real ``runyard server`` process per module and
backend, on a fresh database, with a worker process serving the example workflows
(``runyard.examples``); Debian's chromium driven by Playwright (never a downloaded
browser); an admin session, a read-key session, and :func:`shot` for screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.client.support import Served, serve
from tests.conftest import BACKENDS, ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXAMPLES = "runyard.examples:yard"
EXAMPLE_WORKFLOWS = {"enrich_companies", "flaky_fetch", "approval", "sync_feed"}
SCREENSHOTS = ROOT / "test-output" / "screenshots"
#: The two widths every screenshot is taken at: a laptop and a phone.
WIDTHS = (1280, 390)
#: How long a browser waits for something to show (it comes much sooner).
SHOW_MS = 20_000


@dataclass
class UiServer:
    """A server with the dashboard and a worker, and keys of each kind."""

    served: Served
    admin_key: str  # an issued key with the admin scope
    read_key: str

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def backend(self) -> str:
        return self.served.backend

    def api(self) -> httpx.Client:
        """The HTTP API with the admin key (for starting runs as a client would)."""
        return httpx.Client(base_url=self.url, headers={"x-api-key": self.admin_key}, timeout=30)


@pytest.fixture(scope="module", params=BACKENDS)
def ui_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_template: str | None,
) -> Iterator[UiServer]:
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"ui-{backend}")
    with pytest.MonkeyPatch.context() as mp:
        # Callbacks may reach a receiver on loopback (the operator's allow list).
        mp.setenv("RUNYARD_OUTBOUND_ALLOW", "127.0.0.0/8")
        with serve(backend, folder, pg_template, EXAMPLES, EXAMPLE_WORKFLOWS) as served:
            yield UiServer(
                served=served,
                admin_key=served.make_key("admin"),
                read_key=served.make_key("read"),
            )


# Per module, not per session: Playwright's sync API runs an event loop in this thread for
# as long as it is open, and a test file after the dashboard's in the same process
# (pytest-xdist runs several files in one) could not call asyncio.run.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) at laptop width."""
    ctx = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
    ctx.set_default_timeout(SHOW_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, server: UiServer, key: str) -> Page:
    """Sign ``page`` in with ``key`` through the sign-in form."""
    page.goto(server.url + "/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/ui/login" not in url)
    return page


@pytest.fixture
def signed_in(page: Page, ui_server: UiServer) -> Page:
    """A page signed in with an admin key."""
    return sign_in(page, ui_server, ui_server.admin_key)


@pytest.fixture
def read_only(browser: Browser, ui_server: UiServer) -> Iterator[Page]:
    """A page (in its own profile) signed in with a read-scoped key."""
    ctx = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
    ctx.set_default_timeout(SHOW_MS)
    try:
        yield sign_in(ctx.new_page(), ui_server, ui_server.read_key)
    finally:
        ctx.close()


def shot(page: Page, name: str) -> list[Path]:
    """Full-page screenshots of ``page`` at each width in :data:`WIDTHS`, written to
    ``test-output/screenshots/<name>-<width>.png``; the paths. The page keeps its width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size or {"width": WIDTHS[0], "height": 900}
    paths = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 844 if width < 700 else 900})
        path = SCREENSHOTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    page.set_viewport_size(before)
    return paths
