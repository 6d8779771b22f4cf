"""``runyard keys``: API keys, in the database directly (a key is shown once)."""

from __future__ import annotations

import dataclasses

import typer

from .. import keys as apikeys
from . import output
from .common import DatabaseOption, JsonOption, on_service

app = typer.Typer(
    help="API keys (stored hashed; a new key is shown once).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def create_key(database_url: str | None, name: str | None, scopes: list[str]) -> tuple[str, str]:
    """A new key with ``scopes``, stored as a digest: ``(key id, key)``."""
    return on_service(
        database_url, lambda service: service.create_api_key(name, scopes), command="keys create"
    )


@app.command("create")
def create(
    name: str = typer.Option(None, "--name", help="What the key is for"),
    scope: list[str] = typer.Option(
        None, "--scope", help="read, write or admin (repeatable; default read and write)"
    ),
    as_json: bool = JsonOption,
    database_url: str = DatabaseOption,
) -> None:
    """Create an API key and show it, once."""
    scopes = scope or ["read", "write"]
    unknown = [s for s in scopes if s not in apikeys.SCOPES]
    if unknown:
        raise typer.BadParameter(
            f"unknown scope {unknown[0]!r}: use {', '.join(apikeys.SCOPES)}", param_hint="--scope"
        )
    key_id, key = create_key(database_url, name, sorted(set(scopes), key=apikeys.SCOPES.index))
    if as_json:
        output.print_json({"id": key_id, "key": key, "name": name, "scopes": scopes})
        return
    output.console.print(f"created API key {key_id} ({', '.join(scopes)})", highlight=False)
    output.console.print(key, highlight=False, markup=False)
    output.err.print("[dim]store it now: it is not shown again[/dim]")


@app.command("ls")
def ls(as_json: bool = JsonOption, database_url: str = DatabaseOption) -> None:
    """List API keys (not the keys themselves)."""
    found = on_service(database_url, lambda service: service.api_keys(), command="keys ls")
    if as_json:
        output.print_json({"items": [dataclasses.asdict(k) for k in found]})
        return
    output.table(
        ["id", "name", "scopes", "created", "last used", "revoked"],
        (
            [
                k.id,
                k.name or "-",
                ", ".join(k.scopes),
                output.when(k.created_at),
                output.when(k.last_used_at),
                output.when(k.revoked_at),
            ]
            for k in found
        ),
    )


@app.command("revoke")
def revoke(key_id: str = typer.Argument(...), database_url: str = DatabaseOption) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    on_service(database_url, lambda service: service.revoke_api_key(key_id), command="keys revoke")
    output.console.print(f"revoked API key {key_id}", highlight=False)
