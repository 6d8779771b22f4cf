"""``runyard bench``: the command, added to the ``runyard`` command line through the
``runyard.commands`` entry point group (``pyproject.toml``). Loaded at every start of
``runyard``, so it imports the benchmark itself only when the command runs."""

from __future__ import annotations

import asyncio
from importlib.util import find_spec

import typer

BACKENDS = ("sqlite", "postgres", "all")


def bench(
    backend: str = typer.Option(
        "all", "--backend", "-b", help="sqlite, postgres or all (each on a fresh database)"
    ),
    database_url: str = typer.Option(
        None,
        "--database-url",
        help="Benchmark this database instead of a fresh one (its backend is taken from the URL)",
    ),
    pg_admin_url: str = typer.Option(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "--pg-admin-url",
        help="Where the fresh PostgreSQL database runyard_bench_<pid> is created and dropped",
    ),
    runs: int = typer.Option(2000, "--runs", min=0, help="No-op runs for runs/s (0 skips)"),
    wf3_runs: int = typer.Option(1000, "--wf3-runs", min=0, help="3-step workflows for wf/s"),
    latency_runs: int = typer.Option(
        200, "--latency-runs", min=0, help="Sequential runs for p50/p99 (after 20 warm-up runs)"
    ),
    latency_warmup: int = typer.Option(20, "--latency-warmup", min=0),
    latency_jitter: float = typer.Option(
        0.05, "--latency-jitter", min=0, help="Random pause (s, not counted) before each sample"
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (one per core)"),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Per worker process"),
    start_concurrency: int = typer.Option(
        32,
        "--start-concurrency",
        min=1,
        help="start() calls in flight in the producer during the throughput figures",
    ),
    step_count: int = typer.Option(20, "--step-count", min=1, help="K for the cost of a step"),
    step_runs: int = typer.Option(50, "--step-runs", min=0, help="Runs each of 0 and K steps"),
    sql_runs: int = typer.Option(
        50, "--sql-runs", min=0, help="Sequential runs per workflow for statement counts"
    ),
    http_runs: int = typer.Option(
        2000,
        "--http-runs",
        min=0,
        help="Async POST /v1/runs for HTTP triggers/s through a runyard server (0 skips "
        "every HTTP figure)",
    ),
    http_live_runs: int = typer.Option(
        200, "--http-live-runs", min=0, help="Sequential live-mode POSTs for the HTTP p50/p99"
    ),
    http_wake_runs: int = typer.Option(
        100, "--http-wake-runs", min=0, help="Samples of the long-poll wake-up after a run ends"
    ),
    http_concurrency: int = typer.Option(
        32, "--http-concurrency", min=1, help="HTTP requests in flight for HTTP triggers/s"
    ),
    mcp_runs: int = typer.Option(
        200,
        "--mcp-runs",
        min=0,
        help="MCP tool round trips per transport (stdio, HTTP), then 100 concurrent calls "
        "(0 skips)",
    ),
    also_sqlite_normal: bool = typer.Option(
        False,
        "--also-sqlite-normal",
        help="Also measure SQLite with synchronous=NORMAL (labelled backend sqlite-normal)",
    ),
    timeout: float = typer.Option(300.0, "--timeout", help="Bound of each throughput phase (s)"),
    log_dir: str = typer.Option(None, "--log-dir", help="Keep worker logs here"),
    scale: bool = typer.Option(
        False,
        "--scale",
        help="Measure the scale figures instead (runyard_bench.scale: drain of a backlog, "
        "runs/s and list latency over a long history, bytes per run, claims during a "
        "purge); each group on a fresh database",
    ),
    history_runs: int = typer.Option(
        1_000_000, "--history-runs", min=0, help="--scale: finished runs in history (0 skips)"
    ),
    backlog_small: int = typer.Option(
        5_000, "--backlog-small", min=0, help="--scale: the small backlog drained (0 skips)"
    ),
    backlog_big: int = typer.Option(
        100_000, "--backlog-big", min=0, help="--scale: the big backlog drained (0 skips)"
    ),
    small_drains: int = typer.Option(
        3,
        "--small-drains",
        min=1,
        help="--scale: drains of the small backlog, each on a fresh database (their median)",
    ),
    sleepers: int = typer.Option(
        10_000, "--sleepers", min=0, help="--scale: sleeping runs beside the big backlog"
    ),
    purge_runs: int = typer.Option(
        500_000, "--purge-runs", min=0, help="--scale: runs past retention for the claim figures"
    ),
    claim_backlog: int = typer.Option(
        20_000, "--claim-backlog", min=0, help="--scale: backlog claimed (0 skips the claims)"
    ),
    drain_timeout: float = typer.Option(
        900.0, "--drain-timeout", help="--scale: bound of each drain (s); then complete: false"
    ),
    list_requests: int = typer.Option(
        200, "--list-requests", min=0, help="--scale: GET /v1/runs per filter (after 20 warm-ups)"
    ),
    schedules: bool = typer.Option(
        False,
        "--schedules",
        help="Measure the schedule figures instead (runyard_bench.schedules: fire lag "
        "p50/p99 with 1 and with --schedules-many schedules, the scheduler's CPU per 1,000 "
        "fires)",
    ),
    schedule_fires: int = typer.Option(
        30, "--schedule-fires", min=0, help="--schedules: fires of the one-schedule figure"
    ),
    schedules_many: int = typer.Option(
        10_000, "--schedules-many", min=0, help="--schedules: schedules firing once a minute"
    ),
    callbacks: bool = typer.Option(
        False,
        "--callbacks",
        help="Measure the callback figures instead (runyard_bench.callbacks: deliveries/s "
        "to a loopback receiver, run finished -> callback received p50/p99)",
    ),
    callback_messages: int = typer.Option(
        5000, "--callback-messages", min=0, help="--callbacks: messages of the rate figure"
    ),
    callback_runs: int = typer.Option(
        200, "--callback-runs", min=0, help="--callbacks: runs of the latency figure"
    ),
    ui: bool = typer.Option(
        False,
        "--ui",
        help="Measure the dashboard figures instead (runyard_bench.ui_figures: server time of "
        "/ui/runs and of a run page with --ui-steps steps over --ui-history-runs runs, status "
        "change -> browser showing it)",
    ),
    ui_history_runs: int = typer.Option(
        1_000_000, "--ui-history-runs", min=0, help="--ui: finished runs in history"
    ),
    ui_steps: int = typer.Option(1000, "--ui-steps", min=1, help="--ui: steps of the run page"),
    ui_requests: int = typer.Option(
        50, "--ui-requests", min=1, help="--ui: timed GETs per page (after 10 warm-ups)"
    ),
    ui_changes: int = typer.Option(
        20, "--ui-changes", min=0, help="--ui: status changes timed in the browser (0 skips)"
    ),
    ui_browser: str = typer.Option(
        "/usr/bin/chromium", "--ui-browser", help="--ui: the chromium Playwright drives"
    ),
    http_targets: bool = typer.Option(
        False,
        "--http-targets",
        help="Measure the HTTP-target figure instead (runyard_bench.http_targets: "
        "HTTP-target runs/s against a loopback server, --workers processes of 32)",
    ),
    http_target_runs: int = typer.Option(
        1000, "--http-target-runs", min=1, help="--http-targets: runs started"
    ),
    analyze: bool = typer.Option(
        True,
        "--analyze/--no-analyze",
        help="--scale, PostgreSQL: ANALYZE after the bulk fills (autovacuum is not counted on)",
    ),
) -> None:
    """Measure runs/s, 3-step workflows/s, trigger->complete latency, the cost of a
    checkpointed step and the HTTP figures (triggers/s, live round trip, long-poll wake-up)
    per backend: one JSON line per figure on stdout, progress on stderr."""
    from .harness import BenchOptions, backend_of
    from .scale import ScaleOptions, run_scale
    from .throughput import run_bench

    needs_aiohttp = http_targets or (http_runs > 0 and not (scale or schedules or ui))
    if needs_aiohttp and find_spec("aiohttp") is None:
        raise typer.BadParameter(
            "the HTTP figures' clients need aiohttp: pip install 'runyard[bench]' "
            "(or --http-runs 0)"
        )
    if backend not in BACKENDS:
        raise typer.BadParameter(f"--backend must be one of {', '.join(BACKENDS)}")
    if database_url:
        url_backend = backend_of(database_url)
        if backend not in ("all", url_backend):
            raise typer.BadParameter(f"--database-url is a {url_backend} URL, not {backend}")
        backends = [url_backend]
    else:
        backends = ["sqlite", "postgres"] if backend == "all" else [backend]
        if also_sqlite_normal and "sqlite" in backends:
            backends.insert(backends.index("sqlite") + 1, "sqlite-normal")
    opts = BenchOptions(
        backends=backends,
        database_url=database_url,
        pg_admin_url=pg_admin_url,
        runs=runs,
        wf3_runs=wf3_runs,
        latency_runs=latency_runs,
        latency_warmup=latency_warmup,
        latency_jitter_s=latency_jitter,
        workers=workers,
        concurrency=concurrency,
        start_concurrency=start_concurrency,
        step_count=step_count,
        step_runs=step_runs,
        sql_runs=sql_runs,
        http_runs=http_runs,
        http_live_runs=http_live_runs,
        http_wake_runs=http_wake_runs,
        http_concurrency=http_concurrency,
        mcp_runs=mcp_runs,
        timeout_s=timeout,
        log_dir=log_dir,
    )
    try:
        if ui:
            from .ui_figures import UiOptions, run_ui

            ui_opts = UiOptions(
                history_runs=ui_history_runs,
                steps=ui_steps,
                requests=ui_requests,
                changes=ui_changes,
                browser=ui_browser,
            )
            asyncio.run(run_ui(opts, ui_opts))
        elif http_targets:
            from .http_targets import run_http_targets

            asyncio.run(run_http_targets(opts, http_target_runs))
        elif callbacks:
            from .callbacks import run_callbacks

            asyncio.run(run_callbacks(opts, callback_messages, callback_runs))
        elif schedules:
            from .schedules import run_schedules

            asyncio.run(run_schedules(opts, schedule_fires, schedules_many))
        elif scale:
            scale_opts = ScaleOptions(
                history_runs=history_runs,
                backlog_small=backlog_small,
                backlog_big=backlog_big,
                small_drains=small_drains,
                sleepers=sleepers,
                purge_runs=purge_runs,
                claim_backlog=claim_backlog,
                drain_timeout_s=drain_timeout,
                list_requests=list_requests,
                analyze=analyze,
            )
            asyncio.run(run_scale(opts, scale_opts))
        else:
            asyncio.run(run_bench(opts))
    except asyncio.CancelledError:  # SIGTERM: workers stopped, database dropped
        typer.echo("runyard bench: terminated", err=True)
        raise typer.Exit(143) from None


__all__ = ["BACKENDS", "bench"]
