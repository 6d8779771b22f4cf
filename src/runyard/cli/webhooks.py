"""``runyard webhook-secret``: the deployment's callback signing secrets (whsec_...), in
the database directly (docs/callbacks.md)."""

from __future__ import annotations

import typer

from . import output
from .common import DatabaseOption, JsonOption, on_service

app = typer.Typer(
    help="The secrets that sign callbacks (Standard Webhooks, whsec_...).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("show")
def show(as_json: bool = JsonOption, database_url: str = DatabaseOption) -> None:
    """The secrets signing now, newest first (the first is created if there is none;
    RUNYARD_WEBHOOK_SECRET, when set, is used instead of the stored ones)."""
    found = on_service(
        database_url, lambda service: service.webhook_secrets(), command="webhook-secret show"
    )
    if as_json:
        output.print_json({"secrets": found})
        return
    for secret in found:
        output.console.print(secret, highlight=False, markup=False)


@app.command("rotate")
def rotate(
    grace_hours: float = typer.Option(
        24.0, "--grace-hours", min=0, help="How long the old secrets keep signing too"
    ),
    as_json: bool = JsonOption,
    database_url: str = DatabaseOption,
) -> None:
    """A new secret signs from now on; the old ones sign beside it for --grace-hours
    (each message carries every signature: receivers switch secrets when they like)."""
    secret = on_service(
        database_url,
        lambda service: service.rotate_webhook_secret(grace_hours * 3600.0),
        command="webhook-secret rotate",
    )
    if as_json:
        output.print_json({"secret": secret, "grace_hours": grace_hours})
        return
    output.console.print(secret, highlight=False, markup=False)
    output.err.print(f"[dim]the previous secrets keep signing for {grace_hours:g} h[/dim]")
