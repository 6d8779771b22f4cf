"""``runyard run``: start a run and, with ``--wait``, follow it to the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..client import Client, RunEvent, StartOptions
from ..errors import RunNotFound, RunyardError
from ..models import RunStatus
from ..schemas import RunOut
from . import output
from .common import ApiKeyOption, JsonOption, UrlOption, make_client, parse_json

SUCCESS = (RunStatus.SUCCEEDED, RunStatus.PARTIAL_SUCCEEDED)


def run(
    workflow: str = typer.Argument(..., help="The workflow to run"),
    input: str = typer.Option(
        None, "--input", "-i", help="The input, as JSON (@file, - for stdin)"
    ),
    inputs: str = typer.Option(None, "--inputs", help="Several inputs, as a JSON array"),
    custom_data: str = typer.Option(None, "--custom-data", help="JSON given back in callbacks"),
    run_id: str = typer.Option(None, "--run-id", help="A unique id (starting again returns it)"),
    priority: int = typer.Option(None, "--priority", help="Higher runs first"),
    delay: float = typer.Option(None, "--delay", help="Start after this many seconds"),
    version: str = typer.Option(None, "--version", help="A workflow version"),
    sync_mode: str = typer.Option(None, "--sync-mode", help="full or incremental"),
    max_results: int = typer.Option(None, "--max-results"),
    wait: bool = typer.Option(False, "--wait", "-w", help="Follow the run until it ends"),
    wait_timeout: float = typer.Option(None, "--wait-timeout", help="Stop waiting after S s"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Start a run of WORKFLOW; with --wait, follow it and print its result.

    With --wait the exit status is 1 unless the run succeeded."""
    options: StartOptions = {}
    parsed_inputs = parse_json(inputs, "--inputs")
    if parsed_inputs is not None:
        if not isinstance(parsed_inputs, list):
            raise typer.BadParameter("--inputs must be a JSON array", param_hint="--inputs")
        options["inputs"] = parsed_inputs
    for name, value in (
        ("custom_data", parse_json(custom_data, "--custom-data")),
        ("run_id", run_id),
        ("priority", priority),
        ("delay", delay),
        ("version", version),
        ("sync_mode", sync_mode),
        ("max_results", max_results),
    ):
        if value is not None:
            options[name] = value  # type: ignore[literal-required]
    value = parse_json(input, "--input")
    with make_client(url, api_key) as client:
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


def finish(client: Client, run_id: str, *, as_json: bool, timeout: float | None) -> None:
    """Follow ``run_id`` to its end, print it, and exit 1 unless it succeeded."""
    final = follow(client, run_id, timeout=timeout, show=not as_json)
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


def follow(client: Client, run_id: str, *, timeout: float | None, show: bool) -> RunOut:
    """The run once it ended. Progress comes from its event stream (a bar on a terminal,
    plain lines on stderr otherwise); without a stream, from polling."""
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
    return client.wait_for_completion(run_id, remaining)


class _State:
    """What the progress display shows, updated from events."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.status = "QUEUED"
        self.progress: float | None = None
        self.message: str | None = None
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
        if self.outputs:
            parts.append(f"{self.outputs} output(s)")
        return " ".join(parts)


def _consume(
    client: Client, run_id: str, show: Callable[[_State], None], deadline: float | None
) -> None:
    state = _State(run_id)
    try:
        for event in client.stream_events(run_id):
            state.apply(event)
            show(state)
            if event.event == "end" or (deadline is not None and time.monotonic() > deadline):
                return
    except RunNotFound:
        raise
    except RunyardError:
        pass  # no event stream here (or it broke for good): poll instead
    while deadline is None or time.monotonic() < deadline:
        remaining = None if deadline is None else deadline - time.monotonic()
        answer = client.get_result(run_id, min(remaining or 5.0, 5.0))
        state.apply(RunEvent("status", answer.model_dump(mode="json")))
        show(state)
        if isinstance(answer, RunOut):
            return
