"""``runyard workflows``: what the workers registered, through the HTTP API."""

from __future__ import annotations

import json

import typer

from . import output
from .common import ApiKeyOption, JsonOption, UrlOption, make_client

app = typer.Typer(help="The workflows workers serve.", no_args_is_help=True, rich_markup_mode=None)


@app.command("ls")
def ls(as_json: bool = JsonOption, url: str = UrlOption, api_key: str = ApiKeyOption) -> None:
    """List workflows."""
    with make_client(url, api_key) as client:
        items = client.list_workflows()
    if as_json:
        output.print_json({"items": items})
        return
    output.table(
        ["name", "version", "description", "updated"],
        (
            [w.name, w.version, output.short(w.description, 70), output.when(w.updated_at)]
            for w in items
        ),
    )


@app.command("show")
def show(
    name: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """A workflow: its input schema, options and the workers serving it."""
    with make_client(url, api_key) as client:
        wf = client.get_workflow(name)
    if as_json:
        output.print_json(wf)
        return
    output.fields(
        [
            ("name", wf.name),
            ("version", wf.version),
            ("description", output.short(wf.description, 300)),
            ("options", output.short(wf.options or None, 300)),
            ("workers", ", ".join(f"{w.host}:{w.pid}" for w in wf.workers or []) or "-"),
        ]
    )
    output.console.print("[bold]input schema[/bold]")
    output.console.print_json(json.dumps(wf.input_schema))
