"""``runyard runs``: list, inspect and control runs through the HTTP API."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Protocol, TypeVar

import typer

from ..client import Client, RunFilters
from ..schemas import LeaseOut, RunOut
from . import output
from .common import ApiKeyOption, JsonOption, UrlOption, make_client, parse_json
from .run import finish

app = typer.Typer(
    help="List, inspect and control runs.", no_args_is_help=True, rich_markup_mode=None
)
T = TypeVar("T")


class _Page(Protocol[T]):
    items: list[T]
    next_cursor: str | None


def _run_rows(runs: list[RunOut]) -> Iterator[list[str]]:
    for r in runs:
        progress = "-" if r.progress is None else f"{r.progress:.0%}"
        yield [
            r.id,
            r.workflow,
            output.status(r.status),
            progress,
            str(r.input_count),
            f"{r.credits:g}",
            output.when(r.created_at),
            output.when(r.finished_at),
        ]


@app.command("ls")
def ls(
    workflow: str = typer.Option(None, "--workflow", help="Only runs of this workflow"),
    status: list[str] = typer.Option(None, "--status", "-s", help="Only these statuses"),
    task_id: str = typer.Option(None, "--task-id"),
    schedule_id: str = typer.Option(None, "--schedule-id"),
    mode: str = typer.Option(None, "--mode", help="async or live"),
    created_after: str = typer.Option(None, "--created-after", help="ISO 8601 time"),
    created_before: str = typer.Option(None, "--created-before", help="ISO 8601 time"),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs"),
    cursor: str = typer.Option(None, "--cursor", help="Continue after a previous page"),
    order: str = typer.Option("desc", "--order", help="asc or desc (by creation)"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """List runs, newest first. With --json: {"items": [...], "next_cursor": ...}."""
    if order not in ("asc", "desc"):
        raise typer.BadParameter("asc or desc", param_hint="--order")
    filters: RunFilters = {"order": "asc" if order == "asc" else "desc"}
    for name, value in (
        ("workflow", workflow),
        ("status", [s.upper() for s in status] if status else None),
        ("task_id", task_id),
        ("schedule_id", schedule_id),
        ("mode", mode),
        ("created_after", created_after),
        ("created_before", created_before),
    ):
        if value is not None:
            filters[name] = value  # type: ignore[literal-required]
    with make_client(url, api_key) as client:
        if limit <= 100:
            filters["limit"] = limit
            page = client.list_runs(cursor=cursor, **filters)
            runs, next_cursor = page.items, page.next_cursor
        else:
            filters["limit"] = 100
            runs = list(islice(client.iter_runs(**filters), limit))
            next_cursor = None
    if as_json:
        output.print_json({"items": runs, "next_cursor": next_cursor})
        return
    output.table(
        ["id", "workflow", "status", "progress", "inputs", "credits", "created", "finished"],
        _run_rows(runs),
    )
    output.more(next_cursor)


@app.command("show")
def show(
    run_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """A run: status, result or error, progress, credits and times."""
    with make_client(url, api_key) as client:
        run = client.get_run(run_id)
    if as_json:
        output.print_json(run)
        return
    show_run(run)


def show_run(run: RunOut) -> None:
    pairs = [
        ("id", run.id),
        ("workflow", f"{run.workflow} (version {run.workflow_version})"),
        ("status", output.status(run.status)),
        ("mode", run.mode),
        ("inputs", str(run.input_count)),
        ("iteration", str(run.iteration)),
        ("priority", str(run.priority)),
        ("credits", f"{run.credits:g}"),
    ]
    if run.credits_by_action:
        by_action = ", ".join(f"{a} {c:g}" for a, c in sorted(run.credits_by_action.items()))
        pairs.append(("credits by action", by_action))
    if run.max_results is not None:
        limit = f"{run.max_results}" + (
            " [yellow](reached: outputs truncated)[/yellow]" if run.truncated else ""
        )
        pairs.append(("max results", limit))
    if run.progress is not None:
        pairs.append(("progress", f"{run.progress:.0%} {run.progress_message or ''}"))
    if run.waiting_for:
        pairs.append(("waiting for", output.short(run.waiting_for)))
    if run.lease is not None:
        pairs.append(("lease", lease_hint(run.lease)))
    for label, value in (("task", run.task_id), ("schedule", run.schedule_id)):
        if value:
            pairs.append((label, value))
    if run.parent_id:
        pairs.append(("forked from", run.parent_id))
    pairs += [
        ("created", output.when(run.created_at)),
        ("started", output.when(run.started_at)),
        ("finished", output.when(run.finished_at)),
    ]
    if run.run_time is not None:
        pairs.append(("run time", f"{run.run_time:.3f}s"))
    if run.input_count == 1:
        pairs.append(("input", output.short(run.input, 500)))
    if run.error is not None:
        pairs.append(("error", f"[red]{output.short(run.error, 500)}[/red]"))
    if run.result is not None:
        pairs.append(("result", output.short(run.result, 500)))
    output.fields(pairs)


def lease_hint(lease: LeaseOut, now: datetime | None = None) -> str:
    """What a run waiting for a lease waits for, and until when."""
    now = now or datetime.now(UTC)
    left = max(0.0, (lease.expires_at - now).total_seconds())
    beat = (
        f"no heartbeat for {(now - lease.heartbeat_at).total_seconds():.0f} s"
        if lease.heartbeat_at is not None
        else "no heartbeat"
    )
    return (
        f"[yellow]waiting for the lease of worker {lease.worker} ({beat}) to expire at "
        f"{output.when(lease.expires_at)} (in {left:.0f} s); then another worker resumes "
        "the run[/yellow]"
    )


def _changed(run: RunOut, verb: str, as_json: bool) -> None:
    if as_json:
        output.print_json(run)
    else:
        output.console.print(f"{verb} run [bold]{run.id}[/bold]: {output.status(run.status)}")


@app.command("deliveries")
def deliveries(
    run_id: str = typer.Argument(...),
    redeliver: int = typer.Option(None, "--redeliver", help="Send this delivery again first"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """A run's callback messages and every attempt (status code, latency, error, next try)."""
    with make_client(url, api_key) as client:
        if redeliver is not None:
            client.redeliver(run_id, redeliver)
        found = client.list_deliveries(run_id)
    if as_json:
        output.print_json({"items": found})
        return
    output.table(
        ["id", "kind", "input", "state", "attempts", "last status", "last error", "next attempt"],
        [
            [
                str(d.id),
                d.kind,
                str(d.input_index),
                d.state,
                str(len(d.attempts)),
                str(d.last_status or ""),
                output.short(d.last_error or "", 60),
                output.when(d.next_attempt_at) if d.next_attempt_at else "",
            ]
            for d in found
        ],
    )


@app.command("cancel")
def cancel(
    run_ids: list[str] = typer.Argument(None, help="Runs to cancel"),
    workflow: str = typer.Option(None, "--workflow", help="Every run of this workflow"),
    prefix: str = typer.Option(None, "--prefix", help="Every run whose id starts so"),
    url_prefix: str = typer.Option(
        None, "--url-prefix", help="Every HTTP-target run whose URL starts so"
    ),
    all_runs: bool = typer.Option(False, "--all", help="Every run that has not ended"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Cancel one run, several, every run of a workflow, id prefix or URL prefix, or --all."""
    selectors = workflow or prefix or url_prefix or all_runs
    with make_client(url, api_key) as client:
        if run_ids and len(run_ids) == 1 and not selectors:
            _changed(client.cancel(run_ids[0]), "canceled", as_json)
            return
        if not (run_ids or selectors):
            raise typer.BadParameter(
                "name runs, or give --workflow, --prefix, --url-prefix or --all"
            )
        done = client.bulk_cancel(
            ids=run_ids or None,
            workflow=workflow,
            prefix=prefix,
            url_prefix=url_prefix,
            all=all_runs,
        )
    if as_json:
        output.print_json(done)
    else:
        output.console.print(f"canceled {len(done.canceled)} run(s)")
        for run_id in done.canceled:
            output.console.print(f"  {run_id}", highlight=False)


@app.command("pause")
def pause(
    run_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Pause a run at its next step boundary."""
    with make_client(url, api_key) as client:
        _changed(client.pause(run_id), "paused", as_json)


@app.command("resume")
def resume(
    run_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Resume a PAUSED, FAILED, CANCELED or CRASHED run from its last checkpoint."""
    with make_client(url, api_key) as client:
        _changed(client.resume(run_id), "resumed", as_json)


@app.command("continue")
def continue_(
    run_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Start the next iteration of a finished (incremental) run."""
    with make_client(url, api_key) as client:
        _changed(client.continue_(run_id), "continued", as_json)


@app.command("fork")
def fork(
    run_id: str = typer.Argument(...),
    from_step: str = typer.Option(..., "--from-step", help="A step position or name"),
    new_run_id: str = typer.Option(None, "--run-id", help="The new run's id"),
    input: str = typer.Option(None, "--input", "-i", help="A new input, as JSON"),
    version: str = typer.Option(None, "--version", help="Run on this workflow version"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Start a new run from a step of RUN_ID, reusing the checkpoints before it."""
    step: int | str = int(from_step) if from_step.isdigit() else from_step
    with make_client(url, api_key) as client:
        run = client.fork(
            run_id,
            step,
            new_run_id=new_run_id,
            input=parse_json(input, "--input"),
            version=version,
        )
    _changed(run, "forked into", as_json)


@app.command("wait")
def wait(
    run_id: str = typer.Argument(...),
    timeout: float = typer.Option(None, "--timeout", help="Stop waiting after S seconds"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Follow a run until it ends and print it (exit status 1 unless it succeeded)."""
    with make_client(url, api_key) as client:
        finish(client, run_id, as_json=as_json, timeout=timeout)


@app.command("inputs")
def inputs(
    run_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Each input of a run with its state, result and error."""
    with make_client(url, api_key) as client:
        items = client.inputs(run_id)
    if as_json:
        output.print_json({"items": items})
        return
    output.table(
        ["#", "state", "input", "result", "error"],
        (
            [
                str(i.index),
                output.status(i.state),
                output.short(i.input, 40),
                output.short(i.result, 40),
                output.short(i.error, 50),
            ]
            for i in items
        ),
    )


def _pages(
    all_pages: bool, every: Callable[[], Iterable[T]], first: Callable[[], _Page[T]]
) -> tuple[list[T], str | None]:
    """Every item, following the pages (``--all``), or the first page's items; and the
    next page's cursor (None after ``--all``)."""
    if all_pages:
        return list(every()), None
    page = first()
    return page.items, page.next_cursor


def _printed_json(as_json: bool, items: list[Any], next_cursor: str | None) -> bool:
    if as_json:
        output.print_json({"items": items, "next_cursor": next_cursor})
    return as_json


@app.command("outputs")
def outputs(
    run_id: str = typer.Argument(...),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="Page size"),
    cursor: str = typer.Option(None, "--cursor", help="Start after this cursor"),
    all_pages: bool = typer.Option(False, "--all", help="Every page, not just the first"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """The outputs a run emitted. With --json: {"items": [...], "next_cursor": ...}."""
    with make_client(url, api_key) as client:
        items, next_cursor = _pages(
            all_pages,
            lambda: client.iter_outputs(run_id, cursor=cursor, limit=limit),
            lambda: client.outputs(run_id, cursor=cursor, limit=limit),
        )
    if _printed_json(as_json, items, next_cursor):
        return
    output.table(
        ["id", "item", "iter", "key", "data", "created"],
        (
            [
                str(o.id),
                str(o.item),
                str(o.iteration),
                o.key or "-",
                output.short(o.data, 70),
                output.when(o.created_at),
            ]
            for o in items
        ),
    )
    output.more(next_cursor)


@app.command("logs")
def logs(
    run_id: str = typer.Argument(...),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="Page size"),
    after: int = typer.Option(None, "--after", min=0, help="Start after this log line id"),
    all_pages: bool = typer.Option(False, "--all", help="Every page, not just the first"),
    follow: bool = typer.Option(
        False,
        "--follow",
        "-f",
        help="Print every line so far, then new lines as they are logged, until the run "
        "ends (one line each; with --json, one JSON object per line)",
    ),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """What a run logged through ctx.logger. With --json: {"items": [...], "next_cursor": ...}."""
    if follow:
        with make_client(url, api_key) as client:
            follow_logs(client, run_id, after=after, as_json=as_json)
        return
    with make_client(url, api_key) as client:
        items, next_cursor = _pages(
            all_pages,
            lambda: client.iter_logs(run_id, after=after, limit=limit),
            lambda: client.logs(run_id, after=after, limit=limit),
        )
    if _printed_json(as_json, items, next_cursor):
        return
    output.table(
        ["id", "item", "iter", "attempt", "level", "message", "time"],
        (
            [
                str(line.id),
                str(line.item),
                str(line.iteration),
                str(line.attempt),
                output.short(line.level, 12),
                output.short(line.message, 90),
                output.when(line.created_at),
            ]
            for line in items
        ),
    )
    if next_cursor:
        output.console.print(f"[dim]more: --after {next_cursor}[/dim]", highlight=False)


def follow_logs(client: Client, run_id: str, *, after: int | None, as_json: bool) -> None:
    """Print the run's log lines as they come (``tail -f``), until it has ended and
    every line is printed. Between pages the wait is the server's: a long poll of the
    run's result for up to a second, which answers at once when the run ends."""
    cursor: int | str | None = after
    ended = False
    while True:
        page = client.logs(run_id, after=cursor, limit=100)
        for line in page.items:
            if as_json:
                output.print_json_line(line)
            else:
                output.console.print(
                    f"{output.when(line.created_at)} {line.level:<7} [item {line.item}] "
                    f"{line.message}",
                    markup=False,
                    highlight=False,
                )
            cursor = line.id
        if page.items and page.next_cursor:
            continue  # more lines already stored
        if ended:
            return
        # Lines are stored before the run's outcome, so once it has ended one more read
        # gets the last of them.
        ended = isinstance(client.get_result(run_id, 1.0), RunOut)


@app.command("steps")
def steps(
    run_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """The step log of a run: names, attempts (in all), durations, errors; under each step
    its failed attempts, numbered within their workflow attempt (each attempt of the
    workflow's body gives each step its own retries)."""
    with make_client(url, api_key) as client:
        items = client.steps(run_id)
    if as_json:
        output.print_json({"items": items})
        return
    rows: list[list[str]] = []
    for s in items:
        rows.append(
            [
                str(s.item),
                str(s.position),
                s.name,
                s.kind,
                output.status(s.status),
                str(s.attempts),
                "-" if s.duration_s is None else f"{s.duration_s:.3f}s",
                output.short(s.error, 50),
            ]
        )
        for a in s.failed_attempts:
            took = (a.ended_at - a.started_at).total_seconds()
            rows.append(
                [
                    "",
                    "",
                    f"  workflow attempt {a.workflow_attempt}"
                    if s.kind == "workflow"
                    else f"  attempt {a.attempt} (workflow attempt {a.workflow_attempt})",
                    "attempt",
                    output.status("failed"),
                    "",
                    f"{took:.3f}s",
                    output.short(
                        a.error.get("message") if isinstance(a.error, dict) else a.error, 50
                    ),
                ]
            )
    output.table(["item", "pos", "name", "kind", "status", "attempts", "duration", "error"], rows)


@app.command("transitions")
def transitions(
    run_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Every status change of a run, with its time, oldest first."""
    with make_client(url, api_key) as client:
        items = client.transitions(run_id)
    if as_json:
        output.print_json({"items": items})
        return
    output.table(
        ["at", "from", "to"],
        (
            [
                t.at.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                output.status(t.from_status) if t.from_status else "-",
                output.status(t.to_status),
            ]
            for t in items
        ),
    )


@app.command("queue")
def queue(
    run_id: str = typer.Argument(...),
    state: str = typer.Option(None, "--state", help="queued, processing, completed, ..."),
    offset: int = typer.Option(0, "--offset", min=0),
    limit: int = typer.Option(50, "--limit", "-n", min=1),
    history: bool = typer.Option(
        False,
        "--history",
        help="Also list the items already done (completed, failed and discarded); by "
        "default only those still to do (queued and processing). --state picks one state.",
    ),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """The items of a run: its inputs and the elements it fanned out."""
    with make_client(url, api_key) as client:
        page = client.queue(
            run_id, offset=offset, limit=limit, state=state, include_history=history or None
        )
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["#", "kind", "parent", "name", "state", "attempt", "waiting for", "error"],
        (
            [
                str(i.index),
                i.kind,
                "-" if i.parent is None else str(i.parent),
                i.name or "-",
                output.status(i.state),
                str(i.attempt),
                output.short(i.waiting_for, 30),
                output.short(i.error, 50),
            ]
            for i in page.items
        ),
    )
