"""Signing in to the dashboard (both backends, a real server, Debian's chromium): the
admin key signs in and out, a wrong key is refused saying why, a session survives a second
server process on the same database and ends when its key is revoked, and a read key sees
no action button while its forged POSTs are refused (403) with or without the session's
CSRF token."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Browser, Page, expect

from runyard import keys
from runyard.store import open_store
from runyard.store.dbexec import DbExecutor
from tests.client.support import ServerProcess
from tests.ui.conftest import SHOW_MS, UiServer, sign_in


def _csrf(page: Page) -> str:
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    assert isinstance(token, str)
    return token


def test_admin_signs_in_and_out(page: Page, ui_server: UiServer) -> None:
    page.goto(ui_server.url + "/ui/runs")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fruns$"))
    page.get_by_label("API key").fill(ui_server.admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/runs$"))  # where it was going
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel selected")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "runyard_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/ui"
    assert ui_server.admin_key not in cookie["value"]  # the key is never in the browser
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    expect(page.get_by_role("status")).to_have_text("Signed out")
    assert not [c for c in page.context.cookies() if c["name"] == "runyard_session"]
    page.goto(ui_server.url + "/ui/runs")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_the_servers_own_key_signs_in(page: Page, ui_server: UiServer) -> None:
    sign_in(page, ui_server, ui_server.served.api_key)  # RUNYARD_API_KEY
    expect(page.get_by_text("server key (RUNYARD_API_KEY)")).to_be_visible()


def test_a_wrong_key_is_refused_with_a_clear_message(page: Page, ui_server: UiServer) -> None:
    page.goto(ui_server.url + "/ui/login")
    page.get_by_label("API key").fill(keys.generate())  # well formed, never issued
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("unknown or revoked API key")
    page.get_by_label("API key").fill("hunter2")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not a Runyard API key")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    assert not [c for c in page.context.cookies() if c["name"] == "runyard_session"]


def test_a_session_works_on_another_server_and_ends_with_its_key(
    browser: Browser, ui_server: UiServer
) -> None:
    key = ui_server.served.make_key("write")
    ctx = browser.new_context()
    ctx.set_default_timeout(SHOW_MS)
    other = ServerProcess(
        ui_server.served.db_url,
        ui_server.served.log_dir / "other-server.log",
        ui_server.served.api_key,
    ).start()
    try:
        page = sign_in(ctx.new_page(), ui_server, key)
        cookie = next(c for c in ctx.cookies() if c["name"] == "runyard_session")
        # The same cookie, sent to another server process on the same database.
        there = httpx.get(
            other.url + "/ui/runs", cookies={"runyard_session": cookie["value"]}, timeout=30
        )
        assert there.status_code == 200, there.text[:500]
        assert "Cancel selected" in there.text
        store = open_store(ui_server.served.db_url)
        db = DbExecutor(store)
        try:
            db.write_sync(store.revoke_api_key_txn, keys.key_id(key))
        finally:
            db.close()
        page.goto(ui_server.url + "/ui/runs")
        expect(page).to_have_url(re.compile(r"/ui/login"))
        gone = httpx.get(
            other.url + "/ui/runs",
            cookies={"runyard_session": cookie["value"]},
            timeout=30,
            follow_redirects=False,
        )
        assert gone.status_code == 303
        assert gone.headers["location"].startswith("/ui/login")
    finally:
        other.stop()
        ctx.close()


def test_a_read_key_sees_no_buttons_and_its_forged_posts_get_403(
    read_only: Page, ui_server: UiServer
) -> None:
    page = read_only
    page.goto(ui_server.url + "/ui/runs")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_text("read", exact=False).first).to_be_visible()
    assert page.get_by_role("button", name="Cancel selected").count() == 0
    assert page.get_by_role("button", name="Resume selected").count() == 0
    with ui_server.api() as api:
        run = api.post(
            "/v1/runs", json={"workflow": "approval", "input": {"amount": 5, "reason": "x"}}
        )
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]
    token = _csrf(page)
    form: dict[str, str | float | bool] = {"action": "cancel", "scope": "selection", "ids": run_id}
    without = page.request.post(ui_server.url + "/ui/bulk", form=form)
    assert without.status == 403
    with_token = page.request.post(ui_server.url + "/ui/bulk", form={**form, "csrf": token})
    assert with_token.status == 403
    assert "write scope" in with_token.text()
    by_header = page.request.post(
        ui_server.url + "/ui/bulk", form=form, headers={"X-CSRF-Token": token}
    )
    assert by_header.status == 403
    with ui_server.api() as api:
        assert api.get(f"/v1/runs/{run_id}").json()["status"] != "CANCELED"
        api.post(f"/v1/runs/{run_id}/cancel")


def test_an_admin_post_without_the_csrf_token_gets_403(
    signed_in: Page, ui_server: UiServer
) -> None:
    form: dict[str, str | float | bool] = {
        "action": "cancel",
        "scope": "selection",
        "ids": "run_nope",
    }
    answer = signed_in.request.post(ui_server.url + "/ui/bulk", form=form)
    assert answer.status == 403
    assert "CSRF" in answer.text()
    forged = signed_in.request.post(ui_server.url + "/ui/bulk", form={**form, "csrf": "0" * 40})
    assert forged.status == 403


def test_the_layout_on_a_phone_by_keyboard_and_in_dark_mode(
    signed_in: Page, ui_server: UiServer
) -> None:
    page = signed_in
    page.goto(ui_server.url + "/ui/runs")
    # The keyboard: the first Tab reaches the skip link, which leads to the content.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()
    # A phone: the nav folds behind a real button.
    page.set_viewport_size({"width": 390, "height": 844})
    nav = page.get_by_role("navigation", name="Main")
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(nav.get_by_role("link", name="Workflows")).to_be_hidden()
    menu.focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Workflows")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    # Dark mode follows the system.
    page.set_viewport_size({"width": 1280, "height": 900})
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    assert dark == "rgb(15, 18, 22)"


def test_a_tampered_or_expired_cookie_is_no_session(signed_in: Page, ui_server: UiServer) -> None:
    cookie = next(c for c in signed_in.context.cookies() if c["name"] == "runyard_session")
    expires, mac, key_id = cookie["value"].split(".", 2)

    def answer(value: str) -> httpx.Response:
        return httpx.get(
            ui_server.url + "/ui/runs",
            cookies={"runyard_session": value},
            timeout=30,
            follow_redirects=False,
        )

    assert answer(cookie["value"]).status_code == 200
    later = str(int(expires) + 86400)
    for forged in (
        f"{later}.{mac}.{key_id}",  # extended
        f"{expires}.{'0' * len(mac)}.{key_id}",  # another MAC
        f"{expires}.{mac}.env:RUNYARD_API_KEY",  # another key
        f"{int(expires) - 10**6}.{mac}.{key_id}",  # expired
        "garbage",
    ):
        gone = answer(forged)
        assert gone.status_code == 303, forged
        assert gone.headers["location"].startswith("/ui/login")
    # A live stream without a session is refused, not served.
    stream = httpx.get(
        ui_server.url + "/ui/live/runs",
        headers={"accept": "text/event-stream"},
        timeout=30,
    )
    assert stream.status_code == 401
