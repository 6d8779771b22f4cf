"""The overview page ``/ui/`` in chromium (both backends, a real server and worker
process): runs by status, throughput and failures drawn as charts (uPlot) with their
figures, queue depth per workflow, the live worker with what it holds, credits by
workflow and day; and live: a run started or ended through the API changes the counts on
the open page, without a reload, through the server's change stream (SSE)."""

from __future__ import annotations

import functools
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.ui.conftest import SHOW_MS, UiServer, shot
from tests.waiting import wait_until


def _start(api: httpx.Client, workflow: str, input: Any, **options: Any) -> str:
    answer = api.post("/v1/runs", json={"workflow": workflow, "input": input, **options})
    assert answer.status_code in (200, 201), answer.text
    run_id: str = answer.json()["id"]
    return run_id


def _status(api: httpx.Client, run_id: str) -> str:
    status: str = api.get(f"/v1/runs/{run_id}/status").json()["status"]
    return status


def _waiters(api: httpx.Client, run_id: str) -> bool:
    return bool(api.get(f"/v1/events/approve:{run_id}/waiters").json()["items"])


def _count(page: Page, box: str, status: str) -> Any:
    return page.locator(f"#{box} a[data-status='{status}'] .stat-n")


def test_the_overview_shows_counts_charts_workers_usage_and_stays_live(
    signed_in: Page, ui_server: UiServer
) -> None:
    page = signed_in
    with ui_server.api() as api:
        ok = [_start(api, "enrich_companies", {"domain": d}) for d in ("acme.io", "initech.io")]
        bad = _start(api, "flaky_fetch", {"fail_rate": 1}, retries=0)
        waiting = _start(api, "approval", {"amount": 5, "reason": "coffee"})
        for run_id in ok:
            assert (
                api.get(f"/v1/runs/{run_id}/result", params={"timeout": 30}).json()["status"]
                == "SUCCEEDED"
            )
        assert (
            api.get(f"/v1/runs/{bad}/result", params={"timeout": 60}).json()["status"] == "FAILED"
        )
        wait_until(lambda: _status(api, waiting) == "RUNNING", timeout=20, what="approval waits")

    page.goto(ui_server.url + "/ui/")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.locator("nav a[aria-current='page']")).to_have_text("Overview")
    expect(_count(page, "open-counts", "RUNNING")).to_have_text("1")
    expect(_count(page, "open-counts", "QUEUED")).to_have_text("0")
    expect(_count(page, "ended-counts", "SUCCEEDED")).to_have_text("2")
    expect(_count(page, "ended-counts", "FAILED")).to_have_text("1")

    # Charts drawn by uPlot (a canvas each, with a legend), and their figures as a table.
    for chart in ("hour", "day", "usage"):
        expect(page.locator(f"figure[data-chart='{chart}'] canvas")).to_have_count(1)
    expect(page.locator("figure[data-chart='hour'] .u-legend")).to_contain_text("failed")
    day = page.locator("#activity-day tbody tr")
    expect(day).to_have_count(24)
    last = day.last.locator("td")
    expect(last.nth(1)).to_have_text("3")  # ended this hour
    expect(last.nth(2)).to_have_text("1")  # of which failed

    # Queue depth per workflow, the worker and what it holds, credits by day.
    expect(
        page.locator("#queues tr[data-workflow='approval'] td[data-status='RUNNING']")
    ).to_have_text("1")
    expect(
        page.locator("#queues tr[data-workflow='enrich_companies'] td[data-status='QUEUED']")
    ).to_have_text("0")
    workers = page.locator("#workers tbody tr")
    expect(workers).to_have_count(1)
    expect(workers.first).to_contain_text("/ 16")  # busy of its concurrency
    usage = page.locator("#usage tr[data-workflow='enrich_companies'] td")
    expect(usage.last).to_have_text("8")  # 2 runs x (1 company + 3 people), today
    shot(page, "overview")

    # Live: the page's counts follow runs started and ended through the API.
    page.evaluate("window.__not_reloaded = true")
    with ui_server.api() as api:
        second = _start(api, "approval", {"amount": 7, "reason": "tea"})
        expect(_count(page, "open-counts", "RUNNING")).to_have_text("2", timeout=SHOW_MS)
        for run_id in (waiting, second):
            wait_until(
                functools.partial(_waiters, api, run_id),
                timeout=20,
                what="the approval waits for its event",
            )
            answer = api.post(f"/v1/events/approve:{run_id}", json={"data": {"approved": True}})
            assert answer.json()["woken"] == [run_id]
        expect(_count(page, "open-counts", "RUNNING")).to_have_text("0", timeout=SHOW_MS)
        expect(_count(page, "ended-counts", "SUCCEEDED")).to_have_text("4", timeout=SHOW_MS)
    assert page.evaluate("window.__not_reloaded") is True
    expect(page.locator("figure[data-chart='hour'] canvas")).to_have_count(1)  # redrawn
    # The stream sends the page's body again, never the page: one document all along.
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def _luminance(page: Page, selector: str, prop: str) -> float:
    """The relative luminance (0 black .. 1 white) of an element's computed colour."""
    rgb = page.evaluate(
        "([sel, prop]) => getComputedStyle(document.querySelector(sel))[prop]", [selector, prop]
    )
    r, g, b = (int(v) for v in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_a_read_key_sees_the_overview_in_dark_mode_too(
    read_only: Page, ui_server: UiServer
) -> None:
    page = read_only
    page.emulate_media(color_scheme="dark")
    page.goto(ui_server.url + "/ui/")
    expect(page.locator("#open-counts")).to_be_visible()
    expect(page.locator("figure[data-chart='day'] canvas")).to_have_count(1)
    expect(page.locator("figure[data-chart='day'] .u-legend")).to_contain_text("ended")
    # Dark page, light text, and the figures readable on their cards.
    assert _luminance(page, "body", "backgroundColor") < 0.2
    assert _luminance(page, "body", "color") > 0.7
    assert _luminance(page, "#open-counts .stat-n", "color") > 0.7
    assert _luminance(page, "#open-counts .stat", "backgroundColor") < 0.2
    shot(page, "overview-dark")
