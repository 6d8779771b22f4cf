"""``runyard run``: start a run and, with ``--wait``, follow it to the end."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..client import Client, RunEvent, StartOptions
from ..errors import RunNotFound, RunyardError, Timeout
from ..models import RunStatus
from ..schemas import LiveRunOut, RunOut
from . import output
from .common import ApiKeyOption, JsonOption, UrlOption, make_client, parse_json

SUCCESS = (RunStatus.SUCCEEDED, RunStatus.PARTIAL_SUCCEEDED)
#: The exit status of a wait that ran out of time (as timeout(1)).
TIMED_OUT = 124
#: How long the server waits in live mode unless told (RUNYARD_LIVE_WAIT_S there).
LIVE_WAIT_S = 30.0


def run(
    workflow: str = typer.Argument(None, help="The workflow to run (not with --target)"),
    input: str = typer.Option(
        None, "--input", "-i", help="The input, as JSON (@file, - for stdin)"
    ),
    inputs: str = typer.Option(None, "--inputs", help="Several inputs, as a JSON array"),
    custom_data: str = typer.Option(
        None,
        "--custom-data",
        help="JSON the workflow reads as ctx.custom_data (with --inputs: for each input "
        "that does not give its own)",
    ),
    run_id: str = typer.Option(None, "--run-id", help="A unique id (starting again returns it)"),
    priority: int = typer.Option(None, "--priority", help="Higher runs first"),
    delay: float = typer.Option(None, "--delay", help="Start after this many seconds"),
    version: str = typer.Option(None, "--version", help="A workflow version"),
    sync_mode: str = typer.Option(None, "--sync-mode", help="full or incremental"),
    max_results: int = typer.Option(None, "--max-results"),
    callback: str = typer.Option(
        None, "--callback", help="Report outputs and the end to this URL (signed callbacks)"
    ),
    wait: bool = typer.Option(False, "--wait", "-w", help="Follow the run until it ends"),
    live: bool = typer.Option(
        False,
        "--live",
        help="Live mode: the server answers with the result once the run ends (or its "
        "status after --wait-timeout, 30 s by default, at most 300)",
    ),
    wait_timeout: float = typer.Option(
        None, "--wait-timeout", min=0, help="Stop waiting after S seconds"
    ),
    target: str = typer.Option(
        None,
        "--target",
        "-T",
        help="An HTTP-target run: call this URL instead of a workflow",
    ),
    method: str = typer.Option("POST", "--method", "-X", help="With --target: the method"),
    header: list[str] = typer.Option(
        None, "--header", "-H", help="With --target: a header 'Name: value' (repeatable)"
    ),
    data: str = typer.Option(
        None, "--data", "-d", help="With --target: the body, JSON (@file, - for stdin)"
    ),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Start a run of WORKFLOW; with --wait (or --live), follow it and print its result.

    With --wait or --live the exit status is 1 unless the run succeeded, and 124 if it is
    still going after --wait-timeout (with what it waits for)."""
    options: StartOptions = {}
    extra = parse_json(custom_data, "--custom-data")
    parsed_inputs = parse_json(inputs, "--inputs")
    if parsed_inputs is not None:
        if not isinstance(parsed_inputs, list):
            raise typer.BadParameter("--inputs must be a JSON array", param_hint="--inputs")
        options["inputs"] = [_with_custom_data(entry, extra) for entry in parsed_inputs]
    elif extra is not None:
        options["custom_data"] = extra
    for name, value in (
        ("run_id", run_id),
        ("priority", priority),
        ("delay", delay),
        ("version", version),
        ("sync_mode", sync_mode),
        ("max_results", max_results),
    ):
        if value is not None:
            options[name] = value  # type: ignore[literal-required]
    if callback is not None:
        options["callback"] = {"url": callback}
    value = parse_json(input, "--input")
    if (workflow is None) == (target is None):
        raise typer.BadParameter("give a WORKFLOW or --target URL (one of the two)")
    if target is not None:
        if value is not None or parsed_inputs is not None:
            raise typer.BadParameter(
                "with --target, send the body with --data", param_hint="--input"
            )
        options["url"] = http_target(target, method, header or [], parse_json(data, "--data"))
    with make_client(url, api_key) as client:
        if live:
            if wait_timeout is not None:
                options["wait_timeout"] = wait_timeout
            answer = client.start_run(workflow, value, mode="live", **options)
            if isinstance(answer, LiveRunOut):
                report(client, answer.run.id, answer.run, as_json=as_json, timeout=None)
            else:  # still going when the server's wait ran out
                waited = wait_timeout if wait_timeout is not None else LIVE_WAIT_S
                report(client, answer.id, None, as_json=as_json, timeout=waited)
            return
        started = client.start_run(workflow, value, **options)
        if not wait:
            if as_json:
                output.print_json(started)
            else:
                output.console.print(
                    f"started run [bold]{started.id}[/bold] ({output.status(started.status)})"
                )
            return
        finish(client, started.id, as_json=as_json, timeout=wait_timeout)


def http_target(url: str, method: str, headers: list[str], body: Any) -> dict[str, Any]:
    """The ``url`` object of an HTTP-target run from the flags."""
    named: dict[str, str] = {}
    for line in headers:
        name, sep, text = line.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{line!r} is not 'Name: value'", param_hint="--header")
        named[name.strip()] = text.strip()
    return {"url": url, "method": method.upper(), "headers": named, "body": body}


def _with_custom_data(entry: Any, custom_data: Any) -> Any:
    """An entry of --inputs with ``custom_data`` unless it gives its own: an entry that is
    ``{"input": ..., "custom_data": ...}`` (or ``{"input": ...}``) is taken as is."""
    given = isinstance(entry, dict) and "input" in entry and set(entry) <= {"input", "custom_data"}
    if given:
        if custom_data is None or "custom_data" in entry:
            return entry
        return {**entry, "custom_data": custom_data}
    if custom_data is None:
        return entry
    return {"input": entry, "custom_data": custom_data}


def finish(client: Client, run_id: str, *, as_json: bool, timeout: float | None) -> None:
    """Follow ``run_id`` to its end, print it, and exit 1 unless it succeeded; exit
    :data:`TIMED_OUT` with what the run waits for if it is still going after ``timeout``."""
    final = follow(client, run_id, timeout=timeout, show=not as_json)
    report(client, run_id, final, as_json=as_json, timeout=timeout)


def report(
    client: Client, run_id: str, final: RunOut | None, *, as_json: bool, timeout: float | None
) -> None:
    """Print the run that ended (``final``; exit 1 unless it succeeded), or, when it did
    not end within ``timeout``, say so with what it waits for and exit :data:`TIMED_OUT`."""
    if final is None:
        still = client.get_run(run_id)
        message = f"run {run_id} is still {still.status.value} after {timeout or 0:g}s"
        if still.waiting_for:
            message += f", waiting for {still.waiting_for}"
        if as_json:
            output.print_json(still)
        output.error(message)
        raise typer.Exit(TIMED_OUT)
    if as_json:
        output.print_json(final)
    else:
        show_final(final)
    if final.status.value not in SUCCESS:
        raise typer.Exit(1)


def show_final(run: RunOut) -> None:
    output.console.print(f"run [bold]{run.id}[/bold] {output.status(run.status)}")
    if run.error is not None:
        output.console.print(f"[red]error:[/red] {output.short(run.error, 400)}")
    if run.result is not None:
        output.print_json(run.result)


def follow(client: Client, run_id: str, *, timeout: float | None, show: bool) -> RunOut | None:
    """The run once it ended; None if it is still going after ``timeout`` seconds.
    Progress comes from its event stream (a bar on a terminal, plain lines on stderr
    otherwise); without a stream, from polling."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if show and sys.stderr.isatty():
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=output.err,
            transient=True,
        ) as bar:
            task = bar.add_task(run_id, total=1.0)

            def update(state: _State) -> None:
                bar.update(task, completed=state.progress or 0.0, description=state.describe())

            _consume(client, run_id, update, deadline)
    else:
        last = [""]

        def line(state: _State) -> None:
            text = state.describe(plain=True)
            if show and text != last[0]:
                last[0] = text
                output.err.print(text, markup=False, highlight=False)

        _consume(client, run_id, line, deadline)
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return client.wait_for_completion(run_id, remaining)
    except Timeout:
        return None


class _State:
    """What the progress display shows, updated from events."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.status = "QUEUED"
        self.progress: float | None = None
        self.message: str | None = None
        self.waiting_for: str | None = None
        self.outputs = 0

    def apply(self, event: RunEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if isinstance(data.get("run"), dict):  # an envelope: {"run": {...}}
            data = data["run"]
        if event.event == "output":
            self.outputs += 1
            return
        if isinstance(data.get("status"), str):
            self.status = data["status"]
            waiting = data.get("waiting_for")
            self.waiting_for = waiting if isinstance(waiting, str) else None
        progress = data.get("progress")
        if isinstance(progress, int | float):
            self.progress = max(0.0, min(1.0, float(progress)))
        message = data.get("progress_message", data.get("message"))
        if isinstance(message, str):
            self.message = message

    def describe(self, *, plain: bool = False) -> str:
        status = self.status if plain else output.status(self.status)
        parts = [f"{self.run_id} {status}"]
        if plain and self.progress is not None:
            parts.append(f"{self.progress:.0%}")
        if self.message:
            parts.append(self.message if plain else output.short(self.message, 40))
        if self.waiting_for:
            parts.append(f"waiting for {self.waiting_for}")
        if self.outputs:
            parts.append(f"{self.outputs} output(s)")
        return " ".join(parts)


def _consume(
    client: Client, run_id: str, show: Callable[[_State], None], deadline: float | None
) -> None:
    """Show the run's events until it ends or ``deadline`` passes. The stream is read
    in a thread of its own (a run asleep or waiting for an event sends none for
    long), so the deadline holds whatever the stream does."""
    state = _State(run_id)
    events: queue.Queue[RunEvent | BaseException | None] = queue.Queue()

    def read() -> None:
        try:
            for event in client.stream_events(run_id):
                events.put(event)
        except BaseException as exc:  # handed to the waiting thread
            events.put(exc)
        events.put(None)

    threading.Thread(target=read, name=f"events-{run_id}", daemon=True).start()
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        try:
            got = events.get(timeout=remaining)
        except queue.Empty:
            return
        if got is None:
            return  # the stream ended without an "end" event
        if isinstance(got, RunNotFound):
            raise got
        if isinstance(got, RunyardError):
            break  # no event stream here (or it broke for good): poll instead
        if isinstance(got, BaseException):
            raise got
        state.apply(got)
        show(state)
        if got.event == "end":
            return
    while deadline is None or time.monotonic() < deadline:
        remaining = None if deadline is None else deadline - time.monotonic()
        answer = client.get_result(run_id, min(remaining or 5.0, 5.0))
        state.apply(RunEvent("status", answer.model_dump(mode="json")))
        show(state)
        if isinstance(answer, RunOut):
            return
