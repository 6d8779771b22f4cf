"""``runyard keys``: API keys, in the database directly (a key is shown once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from .. import jsonutil
from .. import keys as apikeys
from ..config import Settings
from ..store import open_store
from ..store.dbexec import DbExecutor
from . import output
from .common import DatabaseOption, JsonOption

app = typer.Typer(help="API keys (stored hashed; a new key is shown once).", no_args_is_help=True)


def _on_store(database_url: str | None, write: bool, fn_name: str, *args: Any) -> Any:
    store = open_store(Settings.from_env(database_url).database_url)
    store.upgrade()
    db = DbExecutor(store)
    try:
        fn: Callable[..., Any] = getattr(store, fn_name)
        return db.write_sync(fn, *args) if write else db.read_sync(fn, *args)
    finally:
        db.close()


def create_key(database_url: str | None, name: str | None, scopes: list[str]) -> tuple[str, str]:
    """A new key with ``scopes``, stored as a digest: ``(key id, key)``."""
    key = apikeys.generate()
    key_id = apikeys.key_id(key)
    _on_store(database_url, True, "create_api_key_txn", key_id, name, apikeys.digest(key), scopes)
    return key_id, key


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
    rows = _on_store(database_url, False, "list_api_keys")
    items = [
        {
            "id": r["id"],
            "name": r["name"],
            "scopes": jsonutil.loads(r["scopes"]),
            "created_at": r["created_at"],
            "last_used_at": r["last_used_at"],
            "revoked_at": r["revoked_at"],
        }
        for r in rows
    ]
    if as_json:
        output.print_json({"items": items})
        return
    output.table(
        ["id", "name", "scopes", "created", "last used", "revoked"],
        (
            [
                k["id"],
                k["name"] or "-",
                ", ".join(k["scopes"]),
                output.when(k["created_at"]),
                output.when(k["last_used_at"]),
                output.when(k["revoked_at"]),
            ]
            for k in items
        ),
    )


@app.command("revoke")
def revoke(key_id: str = typer.Argument(...), database_url: str = DatabaseOption) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    _on_store(database_url, True, "revoke_api_key_txn", key_id)
    output.console.print(f"revoked API key {key_id}", highlight=False)
