"""``runyard tasks``: saved run templates, through the HTTP API."""

from __future__ import annotations

from typing import Any

import typer

from ..client import UNSET, ExecuteOptions
from ..schemas import TaskOut
from . import output
from .common import ApiKeyOption, JsonOption, UrlOption, make_client, parse_json
from .run import finish

app = typer.Typer(
    help="Saved run templates (workflow + input + options).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

OptionsOption = typer.Option(
    None,
    "--options",
    help='Run options as JSON, e.g. {"retries": 2, "priority": 5, "timeout": 600}',
)


def _options(text: str | None) -> dict[str, Any] | None:
    value = parse_json(text, "--options")
    if value is not None and not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--options")
    return value


def _show(task: TaskOut, as_json: bool) -> None:
    if as_json:
        output.print_json(task)
        return
    output.fields(
        [
            ("id", task.id),
            ("name", task.name or "-"),
            ("workflow", task.workflow),
            ("input", output.short(task.input, 200)),
            ("options", output.short(task.options or None, 200)),
            ("created", output.when(task.created_at)),
            ("updated", output.when(task.updated_at)),
        ]
    )


@app.command("create")
def create(
    workflow: str = typer.Option(..., "--workflow", help="The workflow it runs"),
    input: str = typer.Option(None, "--input", "-i", help="Its default input, as JSON"),
    name: str = typer.Option(None, "--name"),
    task_id: str = typer.Option(None, "--id", help="Its id (default: chosen by the server)"),
    options: str = OptionsOption,
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Save a task."""
    with make_client(url, api_key) as client:
        task = client.create_task(
            workflow,
            parse_json(input, "--input"),
            name=name,
            task_id=task_id,
            options=_options(options),
        )
    _show(task, as_json)


@app.command("ls")
def ls(
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100),
    cursor: str = typer.Option(None, "--cursor"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """List tasks. With --json: {"items": [...], "next_cursor": ...}."""
    with make_client(url, api_key) as client:
        page = client.list_tasks(cursor=cursor, limit=limit)
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["id", "name", "workflow", "input", "updated"],
        (
            [t.id, t.name or "-", t.workflow, output.short(t.input, 50), output.when(t.updated_at)]
            for t in page.items
        ),
    )
    output.more(page.next_cursor)


@app.command("show")
def show(
    task_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """A task."""
    with make_client(url, api_key) as client:
        _show(client.get_task(task_id), as_json)


@app.command("update")
def update(
    task_id: str = typer.Argument(...),
    workflow: str = typer.Option(None, "--workflow"),
    input: str = typer.Option(None, "--input", "-i", help="A new default input (JSON)"),
    name: str = typer.Option(None, "--name"),
    options: str = OptionsOption,
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Change a task's workflow, input, name or options (those given)."""
    new_options = _options(options)
    with make_client(url, api_key) as client:
        task = client.update_task(
            task_id,
            name=UNSET if name is None else name,
            workflow=UNSET if workflow is None else workflow,
            input=UNSET if input is None else parse_json(input, "--input"),
            options=UNSET if new_options is None else new_options,
        )
    _show(task, as_json)


@app.command("delete")
def delete(
    task_id: str = typer.Argument(...),
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Delete a task (its runs stay)."""
    with make_client(url, api_key) as client:
        client.delete_task(task_id)
    output.console.print(f"deleted task {task_id}", highlight=False)


@app.command("execute")
def execute(
    task_id: str = typer.Argument(...),
    input: str = typer.Option(None, "--input", "-i", help="Override the input (JSON)"),
    inputs: str = typer.Option(None, "--inputs", help="Several inputs, as a JSON array"),
    run_id: str = typer.Option(None, "--run-id"),
    options: str = OptionsOption,
    wait: bool = typer.Option(False, "--wait", "-w", help="Follow the run until it ends"),
    wait_timeout: float = typer.Option(None, "--wait-timeout"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Start a run from a task; with --wait, follow it and print its result."""
    run_options: ExecuteOptions = {}
    for key, value in (_options(options) or {}).items():
        run_options[key] = value  # type: ignore[literal-required]
    many = parse_json(inputs, "--inputs")
    if many is not None:
        if not isinstance(many, list):
            raise typer.BadParameter("must be a JSON array", param_hint="--inputs")
        run_options["inputs"] = many
    if run_id:
        run_options["run_id"] = run_id
    with make_client(url, api_key) as client:
        run = client.execute_task(task_id, parse_json(input, "--input"), **run_options)
        if wait:
            finish(client, run.id, as_json=as_json, timeout=wait_timeout)
            return
    if as_json:
        output.print_json(run)
    else:
        output.console.print(f"started run [bold]{run.id}[/bold] ({output.status(run.status)})")
