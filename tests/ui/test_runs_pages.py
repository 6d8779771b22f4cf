"""The runs list and a run's page in a real browser (both backends; one server and
worker per module): a run started through the API appears and changes status without a
reload; a run's page shows its steps and follows the run live; cancel from the page;
bulk cancel by selection and by filter, counted and confirmed; a read key sees no button;
screenshots of both pages at 1280 and 390 px."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse

import httpx
from playwright.sync_api import Page, expect

from tests.callbacks.receiver import Receiver
from tests.ui.conftest import UiServer, shot
from tests.waiting import NotYet, wait_until


def _start(api: httpx.Client, workflow: str, input: object) -> str:
    answer = api.post("/v1/runs", json={"workflow": workflow, "input": input})
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["id"]
    assert isinstance(run_id, str)
    return run_id


def _approval(api: httpx.Client, reason: str = "lunch") -> str:
    return _start(api, "approval", {"amount": 12.5, "reason": reason})


def _status(api: httpx.Client, run_id: str) -> str:
    status = api.get(f"/v1/runs/{run_id}").json()["status"]
    assert isinstance(status, str)
    return status


def _waiting(api: httpx.Client, run_id: str) -> None:
    """Until the approval run waits for its event."""

    def waits() -> bool | NotYet:
        run = api.get(f"/v1/runs/{run_id}").json()
        return bool(run.get("waiting_for")) or NotYet(run["status"])

    wait_until(waits, timeout=30, what=f"run {run_id} waiting for its event")


def _approve(api: httpx.Client, run_id: str) -> None:
    answer = api.post(f"/v1/events/approve:{run_id}", json={"data": {"approved": True}})
    assert answer.status_code == 200, answer.text


def _row(page: Page, run_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'[id="run-{run_id}"]')


def _live(page: Page) -> None:
    """Until the page's event stream is open (its updates come from then on)."""
    expect(page.locator("body")).to_have_attribute("data-live", "open")


def _mark_no_reload(page: Page) -> None:
    page.evaluate("window.__noReload = true")


def _not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"


def _csrf(page: Page) -> str:
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    assert isinstance(token, str)
    return token


def _since(seconds_ago: float = 1.0) -> str:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
    return when.replace(tzinfo=None).isoformat(timespec="milliseconds")


def test_a_new_run_appears_and_changes_status_without_reload(
    signed_in: Page, ui_server: UiServer
) -> None:
    page = signed_in
    since = _since()
    page.goto(
        ui_server.url
        + "/ui/runs?"
        + urllib.parse.urlencode({"workflow": "approval", "created_after": since})
    )
    expect(page.get_by_text("No runs match this filter.")).to_be_visible()
    _live(page)
    _mark_no_reload(page)
    with ui_server.api() as api:
        run_id = _approval(api)
        other = _start(api, "sync_feed", {})  # another workflow: not shown
        row = _row(page, run_id)
        expect(row).to_be_visible()
        expect(row.locator("td.status")).to_contain_text("RUNNING")
        expect(row.locator("td.status")).to_contain_text("waiting for")
        _approve(api, run_id)
        expect(row.locator("td.status")).to_contain_text("SUCCEEDED")
        expect(row.locator("td.num")).not_to_have_text("—")
        assert _row(page, other).count() == 0
        _not_reloaded(page)
        # A row rendered by the page (not arrived live) changes status in place too.
        second = _approval(api, "taxi")
        _waiting(api, second)
        page.reload()
        _live(page)
        _mark_no_reload(page)
        expect(_row(page, second).locator("td.status")).to_contain_text("RUNNING")
        api.post(f"/v1/runs/{second}/cancel")
        expect(_row(page, second).locator("td.status")).to_contain_text("CANCELED")
        _not_reloaded(page)
    shot(page, "runs-list")


def test_filters_search_and_paging(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    with ui_server.api() as api:
        run_id = _approval(api, "search me")
    page.goto(ui_server.url + "/ui/runs")
    page.get_by_label("Run id").fill(run_id)
    page.get_by_role("button", name="Go to run").click()
    expect(page).to_have_url(re.compile(re.escape(urllib.parse.quote(run_id)) + "$"))
    page.goto(ui_server.url + "/ui/runs")
    page.get_by_label("Run id").fill("run_that_is_not_there")
    page.get_by_role("button", name="Go to run").click()
    expect(page.get_by_role("status")).to_contain_text("No run has the id")
    bad = page.goto(ui_server.url + "/ui/runs?status=NOPE&created_after=yesterday")
    assert bad is not None and bad.status == 400
    errors = page.locator("#filter-errors")
    expect(errors).to_contain_text("status: unknown status 'NOPE'")
    expect(errors).to_contain_text("created_after")
    with ui_server.api() as api:
        for n in range(3):
            _start(api, "sync_feed", {"n": n})
    page.goto(ui_server.url + "/ui/runs?workflow=sync_feed")
    expect(page.locator("#runs-body tr").first).to_be_visible()
    shown = page.locator("#runs-body tr").count()
    assert shown >= 3
    page.get_by_label("Status").select_option(["SUCCEEDED"])
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=SUCCEEDED"))
    for status in page.locator("#runs-body td.status").all_inner_texts():
        assert "SUCCEEDED" in status


def test_a_runs_page_shows_its_steps_and_follows_it_live(
    signed_in: Page, ui_server: UiServer
) -> None:
    page = signed_in
    with ui_server.api() as api:
        run_id = _approval(api, "a run page")
        _waiting(api, run_id)
        page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(run_id)}")
        expect(page.get_by_role("heading", name=run_id)).to_be_visible()
        expect(page.locator("#run-input")).to_contain_text('"reason": "a run page"')
        steps = page.locator("#steps-table")
        expect(steps.locator('tr[data-step="notify_manager"]')).to_contain_text("completed")
        expect(steps.locator('tr[data-step="decision"]')).to_contain_text("waiting")
        expect(page.locator("#run-steps")).to_contain_text(f"approve:{run_id}")
        expect(page.locator("#run-status")).to_contain_text("RUNNING")
        _live(page)
        _mark_no_reload(page)
        _approve(api, run_id)
        expect(page.locator("#run-status")).to_contain_text("SUCCEEDED")
        expect(steps.locator('tr[data-step="pay"]')).to_contain_text("completed")
        expect(page.locator("#run-result")).to_contain_text('"approved": true')
        expect(page.locator("#transitions")).to_contain_text("SUCCEEDED")
        expect(page.locator("body")).to_have_attribute("data-live", "closed")  # ended
        _not_reloaded(page)
        many = _start(api, "enrich_companies", {"domain": "acme.com"})
        wait_until(
            lambda: _status(api, many) == "SUCCEEDED" or NotYet(_status(api, many)),
            timeout=30,
            what="the enrichment run",
        )
    page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(many)}")
    expect(page.locator("#steps-table")).to_contain_text("lookup")
    expect(page.locator("#outputs-table")).to_contain_text('"domain": "acme.com"')
    expect(page.locator("#run-summary")).to_contain_text("company_lookup")  # credits
    expect(page.locator(".waterfall .bar").first).to_be_visible()
    shot(page, "run-page")


def test_cancel_from_the_page(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    with ui_server.api() as api:
        run_id = _approval(api, "cancel me")
        _waiting(api, run_id)
        page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(run_id)}")
        page.get_by_role("button", name="Cancel", exact=True).click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text(f"Cancel run {run_id}?")
        dialog.get_by_role("button", name="Yes, do it").click()
        expect(page.get_by_role("status")).to_have_text(f"Canceled run {run_id}")
        expect(page.locator("#run-status")).to_contain_text("CANCELED")
        assert _status(api, run_id) == "CANCELED"
        # Resume is offered now; it takes the run back to its wait.
        page.get_by_role("button", name="Resume").click()
        expect(page.get_by_role("status")).to_have_text(f"Resumed run {run_id}")
        wait_until(
            lambda: _status(api, run_id) == "RUNNING" or NotYet(_status(api, run_id)),
            timeout=30,
            what="the resumed run",
        )
        api.post(f"/v1/runs/{run_id}/cancel")


def test_bulk_cancel_by_selection_and_by_filter(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    since = _since()
    with ui_server.api() as api:
        chosen = [_approval(api, f"bulk {n}") for n in range(5)]
        for run_id in chosen:
            _waiting(api, run_id)
        query = urllib.parse.urlencode({"workflow": "approval", "created_after": since})
        page.goto(ui_server.url + "/ui/runs?" + query)
        for run_id in chosen[:2]:
            _row(page, run_id).get_by_role("checkbox").check()
        expect(page.locator("[data-selected-count]")).to_have_text("2")
        page.get_by_role("button", name="Cancel selected").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_contain_text("the 2 selected runs")
        dialog.get_by_role("button", name="Yes, do it").click()
        expect(page.get_by_role("status")).to_have_text("Canceled 2 runs")
        assert [_status(api, r) for r in chosen[:2]] == ["CANCELED"] * 2
        assert "CANCELED" not in {_status(api, r) for r in chosen[2:]}
        # The rest by the filter: counted first, then confirmed.
        page.get_by_role("link", name="Cancel all matching…").click()
        expect(page.locator("#bulk-count")).to_contain_text("3 runs match")
        page.get_by_role("button", name="Yes, cancel 3 runs").click()
        expect(page.get_by_role("status")).to_have_text("Canceled 3 runs")
        assert {_status(api, r) for r in chosen} == {"CANCELED"}
        # Resume them by the filter (canceled runs of this filter: all five).
        page.get_by_role("link", name="Resume all matching…").click()
        expect(page.locator("#bulk-count")).to_contain_text("5 runs match")
        page.get_by_role("button", name="Yes, resume 5 runs").click()
        expect(page.get_by_role("status")).to_have_text("Resumed 5 runs")
        assert "CANCELED" not in {_status(api, r) for r in chosen}
        api.post("/v1/runs/cancel", json={"ids": chosen})


def test_a_read_key_sees_no_buttons_on_a_run(read_only: Page, ui_server: UiServer) -> None:
    page = read_only
    with ui_server.api() as api:
        run_id = _approval(api, "read only")
        _waiting(api, run_id)
        page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(run_id)}")
        expect(page.locator("#run-status")).to_contain_text("RUNNING")
        expect(page.locator("#steps-table")).to_contain_text("notify_manager")
        for name in ("Cancel", "Pause", "Resume", "Continue", "Fork"):
            assert page.get_by_role("button", name=name, exact=True).count() == 0, name
        page.goto(ui_server.url + "/ui/runs")
        assert page.get_by_role("checkbox").count() == 0 or not page.locator("#bulk").count()
        assert page.get_by_role("link", name="Cancel all matching…").count() == 0
        forged = page.request.post(
            ui_server.url + f"/ui/runs/{urllib.parse.quote(run_id)}/action",
            form={"action": "cancel"},
        )
        assert forged.status == 403
        assert _status(api, run_id) == "RUNNING"
        api.post(f"/v1/runs/{run_id}/cancel")


def test_pause_continue_and_fork_from_the_page(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    with ui_server.api() as api:
        waiting = _approval(api, "pause me")
        _waiting(api, waiting)
        page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(waiting)}")
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("status")).to_have_text(f"Paused run {waiting}")
        expect(page.locator("#run-status")).to_contain_text("PAUSED")
        assert _status(api, waiting) == "PAUSED"
        # An action the status does not allow is refused, saying why (a stale page).
        stale = page.request.post(
            ui_server.url + f"/ui/runs/{urllib.parse.quote(waiting)}/action",
            form={"action": "continue", "csrf": _csrf(page)},
        )
        assert stale.ok
        assert "cannot continue run" in stale.text()
        api.post(f"/v1/runs/{waiting}/cancel")

        feed = _start(api, "sync_feed", {})
        wait_until(
            lambda: _status(api, feed) == "SUCCEEDED" or NotYet(_status(api, feed)),
            timeout=30,
            what="the sync run",
        )
        page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(feed)}")
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("status")).to_have_text(f"Continued run {feed}")
        wait_until(
            lambda: (
                (
                    api.get(f"/v1/runs/{feed}").json()["iteration"] == 2
                    and _status(api, feed) == "SUCCEEDED"
                )
                or NotYet(api.get(f"/v1/runs/{feed}").json())
            ),
            timeout=30,
            what="the second iteration",
        )
        expect(page.locator("#run-summary")).to_contain_text("iteration 2")

        enrich = _start(api, "enrich_companies", {"domain": "fork.com"})
        wait_until(
            lambda: _status(api, enrich) == "SUCCEEDED" or NotYet(_status(api, enrich)),
            timeout=30,
            what="the enrichment run",
        )
        page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(enrich)}")
        page.get_by_label("Fork from step").select_option("3")
        page.get_by_label("New run id (optional)").fill(f"{enrich}-fork")
        page.get_by_role("button", name="Fork").click()
        expect(page.get_by_role("heading", name=f"{enrich}-fork")).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text(f"Forked from run {enrich}")
        expect(page.locator("#run-summary")).to_contain_text(enrich)  # forked from
        wait_until(
            lambda: (
                _status(api, f"{enrich}-fork") == "SUCCEEDED"
                or NotYet(_status(api, f"{enrich}-fork"))
            ),
            timeout=30,
            what="the fork",
        )


def test_bad_addresses_are_named_not_500(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    missing = page.goto(ui_server.url + "/ui/runs/run_never_was")
    assert missing is not None and missing.status == 404
    expect(page.get_by_role("alert")).to_contain_text("No run has the id 'run_never_was'")
    odd = page.goto(ui_server.url + "/ui/runs/a%00b")
    assert odd is not None and odd.status == 404
    with ui_server.api() as api:
        run_id = _approval(api, "bad offsets")
    bad = page.goto(ui_server.url + f"/ui/runs/{run_id}?items_offset=-1&logs_after=x")
    assert bad is not None and bad.status == 400
    expect(page.get_by_role("alert").first).to_contain_text("items_offset")
    cursor = page.goto(ui_server.url + "/ui/runs?cursor=garbage")
    assert cursor is not None and cursor.status == 400
    with ui_server.api() as api:
        api.post(f"/v1/runs/{run_id}/cancel")


def test_a_failed_runs_page_shows_its_error_and_retries(
    signed_in: Page, ui_server: UiServer
) -> None:
    page = signed_in
    with ui_server.api() as api:
        run_id = _start(api, "flaky_fetch", {"url": "https://down.example", "fail_rate": 1.0})
        wait_until(
            lambda: _status(api, run_id) == "FAILED" or NotYet(_status(api, run_id)),
            timeout=60,
            what="the flaky run failing after its retries",
        )
    page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(run_id)}")
    expect(page.locator("#run-error")).to_contain_text("connection reset")
    fetch = page.locator('#steps-table tr[data-step="fetch"]')
    expect(fetch.first).to_contain_text("failed")
    expect(fetch.first).to_contain_text("failed attempts")
    # Every failed attempt is marked on the waterfall (the workflow is retried 5 times).
    assert page.locator(".waterfall .bar.attempt").count() >= 6
    assert page.get_by_role("button", name="Resume").count() == 1
    shot(page, "run-page-failed")


def test_a_runs_callback_deliveries_are_shown(signed_in: Page, ui_server: UiServer) -> None:
    receiver = Receiver().start()
    try:
        with ui_server.api() as api:
            answer = api.post(
                "/v1/runs",
                json={
                    "workflow": "enrich_companies",
                    "input": {"domain": "hooked.com"},
                    "callback": {"url": receiver.url()},
                },
            )
            assert answer.status_code == 201, answer.text
            run_id = answer.json()["id"]

            def delivered() -> bool | NotYet:
                ds = api.get(f"/v1/runs/{run_id}/deliveries").json()["data"]
                done = any(d["kind"] == "finished" and d["state"] == "delivered" for d in ds)
                return done or NotYet(ds)

            wait_until(delivered, timeout=30, what="the finished message delivered")
        signed_in.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(run_id)}")
        table = signed_in.locator("#deliveries-table")
        expect(table).to_contain_text("finished")
        expect(table).to_contain_text("delivered")
        expect(table).to_contain_text("HTTP 200")
    finally:
        receiver.stop()


def test_outputs_and_items_are_paged(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    domains = [f"c{n:02d}.example.com" for n in range(55)]
    with ui_server.api() as api:
        answer = api.post(
            "/v1/runs",
            json={
                "workflow": "enrich_companies",
                "inputs": [{"input": {"domain": d}} for d in domains],
            },
        )
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]
        wait_until(
            lambda: _status(api, run_id) == "SUCCEEDED" or NotYet(_status(api, run_id)),
            timeout=120,
            what="the run of 55 inputs",
        )
    page.goto(ui_server.url + f"/ui/runs/{urllib.parse.quote(run_id)}")
    expect(page.get_by_text("55 inputs (the first 20").first).to_be_visible()
    outputs = page.locator("#outputs-table tbody tr")
    expect(outputs).to_have_count(50)
    page.get_by_role("link", name="Next outputs »").click()
    expect(outputs).to_have_count(5)
    expect(page.get_by_role("link", name="Next outputs »")).to_have_count(0)
    seen = page.locator("#outputs-table").inner_text()
    page.get_by_role("link", name="« First").first.click()
    expect(outputs).to_have_count(50)
    first = page.locator("#outputs-table").inner_text()
    # Each output once across the two pages.
    for d in domains:
        assert (d in seen) != (d in first), d
    page.get_by_role("link", name="Next items »").click()
    expect(page).to_have_url(re.compile(r"items_offset=50"))
    expect(page.locator("#run-items tbody tr").first).to_contain_text("50")


def test_a_list_left_open_keeps_the_newest_rows(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    since = _since()
    page.goto(
        ui_server.url
        + "/ui/runs?"
        + urllib.parse.urlencode({"workflow": "sync_feed", "created_after": since})
    )
    _live(page)
    with ui_server.api() as api:
        ids = [_start(api, "sync_feed", {"n": n}) for n in range(205)]
    expect(_row(page, ids[-1])).to_be_visible()
    expect(page.locator("#runs-body tr")).to_have_count(200)
    assert _row(page, ids[0]).count() == 0  # the oldest went
    assert page.locator("#runs-body tr").first.get_attribute("id") == f"run-{ids[-1]}"
