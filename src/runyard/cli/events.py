"""``runyard notify`` and ``runyard waiters``: events, through the HTTP API."""

from __future__ import annotations

import typer

from . import output
from .common import ApiKeyOption, JsonOption, UrlOption, make_client, parse_json


def notify(
    event_id: str = typer.Argument(..., help="The event, e.g. approve:<run id>"),
    data: str = typer.Option(None, "--data", "-d", help="Its data, as JSON"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Send event EVENT_ID: every run waiting for it wakes up with DATA."""
    value = parse_json(data, "--data")
    with make_client(url, api_key) as client:
        done = client.notify(event_id, value)
    if as_json:
        output.print_json(done)
        return
    output.console.print(
        f"notified {done.event_id}: woke {len(done.woken)} run(s)", highlight=False
    )
    for run_id in done.woken:
        output.console.print(f"  {run_id}", highlight=False)


def waiters(
    event_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """The runs waiting for EVENT_ID."""
    with make_client(url, api_key) as client:
        items = client.waiters(event_id)
    if as_json:
        output.print_json({"items": items})
        return
    output.table(
        ["run", "item", "since", "deadline"],
        ([w.run_id, str(w.item), output.when(w.since), output.when(w.deadline)] for w in items),
    )
