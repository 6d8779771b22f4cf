"""The dashboard figures of ``runyard bench --ui`` (issue 22), one JSON line each.

Method, per backend, on a fresh database:

* history: ``--ui-history-runs`` (1,000,000) finished no-op runs, copied from a few real
  ones by :func:`~runyard_bench.clone.clone_runs` (the bulk path of ``--scale``), created
  evenly over the last 30 days; and one real run of ``k_steps`` with ``--ui-steps``
  (1,000) checkpointed steps, executed by an in-process worker;
* a ``runyard server`` process on loopback; one httpx client signs in at ``/ui/login``
  with the server's key (the session cookie the browser gets) and, after
  :data:`WARMUP` requests, times ``--ui-requests`` sequential GETs of each page on one
  keep-alive connection, from sending the request to the whole 200 page read (so the
  server's time plus a loopback round trip): ``ui_runs_page_p50_ms``/``_p99_ms``
  (``/ui/runs``, and filtered by status: SUCCEEDED, which every copied run has, and
  FAILED, which none has) and ``ui_run_page_p50_ms``/``_p99_ms`` (``/ui/runs/{id}`` of the
  1,000-step run); ``ui_overview_page_p50_ms``/``_p99_ms`` (``/ui/``: its counts, the
  ended runs of the last hour and day, workers, usage);
* ``ui_status_delay_p50_ms``/``_p99_ms``: headless chromium (Playwright, Debian's
  ``/usr/bin/chromium`` or ``--ui-browser``) signed in on ``/ui/runs``, showing
  ``--ui-changes`` runs created beforehand with start times one second apart; a worker
  (in this process, so another process than the server) runs each when it comes due and
  it ends SUCCEEDED; a MutationObserver on the page records the moment the row's status
  cell says SUCCEEDED (``performance.timeOrigin + performance.now()``); the delay is that
  moment minus the time of the run's SUCCEEDED transition as the database recorded it
  (``GET /v1/runs/{id}/transitions``; the same host's clock). The path measured: commit
  in the worker's process, wake-up of the server's process (NOTIFY, or the SQLite wake
  bus), the server-sent event, htmx's swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx

from runyard import Runyard, keys

from .clone import clone_runs
from .harness import BenchOptions, emit, fresh_database, log, session, sqlite_durability
from .measure import percentile
from .scale import template_runs
from .server import ServerProc
from .workflows import build_yard

DAY_S = 86400.0
#: Requests not counted before each page's timed ones.
WARMUP = 10
#: Seconds between the start times of the runs whose status change is timed.
CHANGE_GAP_S = 1.0
#: The chromium flags of the browser tests (no sandbox in a container, no GPU).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
#: Records, per run id watched, when its row's status cell first says SUCCEEDED.
OBSERVER_JS = """
(ids) => {
  window.__seen = {};
  const watch = new Set(ids);
  const look = () => {
    const t = performance.timeOrigin + performance.now();
    for (const id of watch) {
      const row = document.getElementById("run-" + id);
      const cell = row && row.querySelector("td.status");
      if (cell && cell.textContent.includes("SUCCEEDED")) {
        window.__seen[id] = t;
        watch.delete(id);
      }
    }
  };
  new MutationObserver(look).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true});
  look();
}
"""


@dataclass(frozen=True)
class UiOptions:
    """What ``--ui`` measures (see the module)."""

    history_runs: int = 1_000_000
    steps: int = 1000
    requests: int = 50
    changes: int = 20
    browser: str = "/usr/bin/chromium"


def _ms(values: list[float], p: int) -> float:
    return round(percentile(values, p), 2)


async def _time_page(c: httpx.AsyncClient, path: str, requests: int, check: str) -> list[float]:
    """Latencies (ms) of ``requests`` sequential GETs of ``path`` after the warm-ups;
    each answer must be a 200 holding ``check``."""
    lat: list[float] = []
    for k in range(WARMUP + requests):
        t = time.perf_counter()
        r = await c.get(path)
        dt = (time.perf_counter() - t) * 1000.0
        if r.status_code != 200 or check not in r.text:
            raise RuntimeError(f"GET {path}: HTTP {r.status_code}, {check!r} not in the page")
        if k >= WARMUP:
            lat.append(dt)
    return lat


def _emit_pair(figure: str, lat: list[float], base: dict[str, Any], **extra: Any) -> None:
    for p in (50, 99):
        emit(
            {
                "figure": f"{figure}_p{p}_ms",
                **base,
                **extra,
                "value": _ms(lat, p),
                "unit": "ms",
                "n": len(lat),
                "max_ms": round(max(lat), 2),
            }
        )


@contextlib.asynccontextmanager
async def _worker(y: Runyard) -> AsyncIterator[None]:
    w = y.worker(concurrency=8, shutdown_timeout_s=5)
    task = asyncio.create_task(w.run())
    try:
        yield
    finally:
        w.stop()
        await asyncio.wait_for(task, 60)


async def _status_delays(
    y: Runyard, server: ServerProc, browser_path: str, changes: int
) -> list[float]:
    """The delays (ms) from a run's SUCCEEDED transition to the browser showing it."""
    from playwright.async_api import async_playwright

    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"x-api-key": server.api_key}, timeout=60.0
    ) as api:
        first = time.time() + 15.0  # time to open the page before the first comes due
        ids = []
        for i in range(changes):
            r = await api.post(
                "/v1/runs",
                json={"workflow": "noop", "input": i, "not_before": first + i * CHANGE_GAP_S},
            )
            r.raise_for_status()
            ids.append(str(r.json()["id"]))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(server.base_url + "/ui/login?next=/ui/runs")
                await page.get_by_label("API key").fill(server.api_key)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url("**/ui/runs")
                for run_id in ids:
                    await page.wait_for_selector(f"[id='run-{run_id}']", state="attached")
                await page.evaluate(OBSERVER_JS, ids)
                async with _worker(y):
                    deadline = first + changes * CHANGE_GAP_S + 60
                    seen: dict[str, float] = {}
                    while len(seen) < len(ids) and time.time() < deadline:
                        await asyncio.sleep(0.5)
                        seen = await page.evaluate("window.__seen")
            finally:
                await browser.close()
        missing = [i for i in ids if i not in seen]
        if missing:
            raise RuntimeError(f"the browser never showed {len(missing)} runs SUCCEEDED")
        delays = []
        for run_id in ids:
            r = await api.get(f"/v1/runs/{run_id}/transitions")
            r.raise_for_status()
            ended = [t for t in r.json()["items"] if t["to_status"] == "SUCCEEDED"]
            at = datetime.fromisoformat(ended[0]["at"]).timestamp() * 1000.0
            delays.append(seen[run_id] - at)
        return delays


async def _backend(
    backend: str,
    opts: BenchOptions,
    tmp: Path,
    logs: Path,
    common: dict[str, Any],
    ui: UiOptions,
) -> None:
    sqlite_durability(backend)
    with fresh_database(backend, opts, tmp) as url:
        y = build_yard(url)
        await asyncio.to_thread(y.migrate)
        base = {"backend": backend, **common}
        try:
            templates = await template_runs(y, 4)
            async with _worker(y):
                big = await y.start("k_steps", ui.steps)
                await big.result(timeout=600)
            now = time.time()
            if ui.history_runs:
                rep = await asyncio.to_thread(
                    clone_runs,
                    url,
                    templates,
                    ui.history_runs,
                    oldest=now - 30 * DAY_S,
                    newest=now - 60,
                )
                log(f"{backend}: {ui.history_runs} runs cloned in {rep.seconds:.1f} s")
            history = {"history": ui.history_runs}
            key = keys.generate()
            server = ServerProc(url, key, {}, logs / backend / "server.log")
            await server.start()
            try:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as c:
                    r = await c.post("/ui/login", data={"key": key, "next": "/ui/runs"})
                    if r.status_code != 303:
                        raise RuntimeError(f"sign-in: HTTP {r.status_code} {r.text[:200]}")
                    method = (
                        f"{WARMUP} warm-ups, then sequential GETs on one keep-alive connection "
                        "to a runyard server process on loopback, signed in; from sending the "
                        "request to the whole 200 page read"
                    )
                    for label, path, check in (
                        ("none", "/ui/runs", 'id="run-'),
                        ("status=SUCCEEDED", "/ui/runs?status=SUCCEEDED", 'id="run-'),
                        ("status=FAILED", "/ui/runs?status=FAILED", "</html>"),
                    ):
                        lat = await _time_page(c, path, ui.requests, check)
                        log(f"{backend} {path}: p50 {_ms(lat, 50)} ms, p99 {_ms(lat, 99)} ms")
                        _emit_pair(
                            "ui_runs_page", lat, base, **history, filter=label, method=method
                        )
                    lat = await _time_page(c, "/ui/", ui.requests, 'id="open-counts"')
                    log(f"{backend} overview: p50 {_ms(lat, 50)} ms, p99 {_ms(lat, 99)} ms")
                    _emit_pair("ui_overview_page", lat, base, **history, method=method)
                    path = f"/ui/runs/{big.id}"
                    lat = await _time_page(c, path, ui.requests, big.id)
                    log(f"{backend} run page: p50 {_ms(lat, 50)} ms, p99 {_ms(lat, 99)} ms")
                    _emit_pair("ui_run_page", lat, base, **history, steps=ui.steps, method=method)
                if ui.changes:
                    if find_spec("playwright") is None or not Path(ui.browser).exists():
                        log(
                            f"the status delay needs playwright and a chromium at {ui.browser} "
                            "(--ui-browser): not measured"
                        )
                    else:
                        delays = await _status_delays(y, server, ui.browser, ui.changes)
                        log(f"{backend} status delay: p50 {_ms(delays, 50)} ms")
                        _emit_pair(
                            "ui_status_delay",
                            delays,
                            base,
                            **history,
                            method="runs ended SUCCEEDED by a worker in another process "
                            "than the server, one a second; delay = when a MutationObserver "
                            "in headless chromium sees the row's status cell say SUCCEEDED "
                            "- the transition's time in the database (one host clock)",
                        )
            finally:
                server.stop()
        finally:
            y.close()


async def run_ui(opts: BenchOptions, ui: UiOptions) -> None:
    """The dashboard figures for each backend of ``opts`` (see the module)."""
    async with session(opts, "runyard-bench-ui-") as s:
        for backend in opts.backends:
            if backend == "sqlite-normal":
                continue
            await _backend(backend, opts, s.tmp, s.logs, s.common, ui)


__all__ = ["UiOptions", "run_ui"]
