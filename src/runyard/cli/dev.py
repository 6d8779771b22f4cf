"""``runyard dev``: the server and a worker in one process, on a SQLite file, with the
bundled example workflows (or your app's), ready to be called with curl."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import typer

from .. import keys as apikeys
from .. import loop
from ..app import Runyard
from ..config import DEFAULT_URL
from ..service import Service
from . import output
from .common import (
    announce_database,
    describe_database,
    load_app,
    on_service,
    setup_logging,
    sqlite_file,
)

EXAMPLES = "runyard.examples:yard"
#: An input to show in the printed curl, per bundled example.
EXAMPLE_INPUTS: dict[str, Any] = {
    "enrich_companies": {"domain": "acme.com"},
    "flaky_fetch": {"url": "https://example.com", "fail_rate": 0.3},
    "approval": {"amount": 42.0, "reason": "books"},
    "sync_feed": None,
}


def dev(
    app: str = typer.Argument(
        None, help=f"The Runyard to serve, as MODULE:ATTRIBUTE (default {EXAMPLES})"
    ),
    host: str = typer.Option("127.0.0.1", "--host", envvar="RUNYARD_HOST"),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, envvar="RUNYARD_PORT"),
    database_url: str = typer.Option(
        DEFAULT_URL,
        "--database-url",
        envvar="RUNYARD_DATABASE_URL",
        help="Where runs are kept (created if new; the default folder .runyard/ holds the "
        "database and the dev key, and a .gitignore that keeps both out of git)",
        show_envvar=True,
    ),
    api_key: str = typer.Option(
        None,
        "--api-key",
        envvar="RUNYARD_API_KEY",
        help="Use this admin key (a key from runyard keys create keeps its own scopes; "
        "default: one created and kept beside the database)",
    ),
    concurrency: int = typer.Option(16, "--concurrency", "-c", min=1),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Run the server and a worker in one process (Ctrl-C stops both, gracefully)."""
    from ..server import ServerSettings, create_app

    setup_logging(log_level)
    _check_port(host, port)
    yard = load_app(app or EXAMPLES)
    yard.settings = dataclasses.replace(yard.settings, database_url=database_url)
    announce_database("dev", database_url)
    yard.migrate()
    key, where = dev_key(yard, api_key)
    settings = dataclasses.replace(
        ServerSettings.from_env(), database_url=database_url, api_key=api_key or None
    )
    fastapi_app = create_app(yard, settings=settings)
    # (schedules are fired by the server's scheduler, in this same process)
    worker = yard.worker(concurrency=concurrency, shutdown_timeout_s=10.0, schedules=False)
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    try:
        loop.run(_serve_and_work(fastapi_app, worker, host, port, base, yard, key, where))
    finally:
        yard.close()


def _check_port(host: str, port: int) -> None:
    """A clear error before anything starts when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(
                f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port"
            ) from None


def dev_key(yard: Runyard, given: str | None) -> tuple[str, str]:
    """The admin key to print, and where it comes from: the one given (accepted by the
    server as RUNYARD_API_KEY), else the one kept in ``<database>.key`` if the store still
    knows it, else a new key stored (hashed) in the database and written to that file."""
    if given:
        return given, "from RUNYARD_API_KEY / --api-key"
    path = _key_file(yard.settings.database_url)

    async def kept_or_new(service: Service) -> tuple[str, bool]:
        if path is not None and path.exists():
            kept = path.read_text().strip()
            if apikeys.well_formed(kept) and await service.api_key(apikeys.digest(kept)):
                return kept, True
        return (await service.create_api_key("runyard dev", ["admin"]))[1], False

    # (A service of its own: the yard's executor is for the server's event loop.)
    key, kept = on_service(yard.settings.database_url, kept_or_new)
    if path is None:
        return key, "new; runyard keys revoke to drop it"
    if kept:
        os.chmod(path, 0o600)  # (a file kept from before 0600 was the rule)
        return key, f"kept in {path}, readable only by you"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # (O_CREAT's mode applies to a new file only)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key, f"new; kept in {path}, readable only by you"


def _key_file(database_url: str) -> Path | None:
    """``<database file>.key`` beside a SQLite database (None on PostgreSQL)."""
    db_file = sqlite_file(database_url)
    return None if db_file is None else db_file.with_name(db_file.name + ".key")


def example_curl(base: str, key: str, yard: Runyard) -> str:
    """A curl that starts a run in live mode (it answers with the result): of a bundled
    example with its known input, else of the app's first workflow (by name) for which
    an input can be made from its input schema that the schema accepts."""
    name, sample = example_run(yard)
    body = json.dumps({"workflow": name, "input": sample, "mode": "live"})
    return (
        f"curl -sS -X POST {base}/v1/runs -H {shlex.quote('Authorization: Bearer ' + key)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def example_run(yard: Runyard) -> tuple[str, Any]:
    """The workflow and input the banner's curl starts (``("", None)`` for no workflow)."""
    for name, sample in EXAMPLE_INPUTS.items():
        if name in yard.workflows:
            return name, sample
    fallback: tuple[str, Any] | None = None
    for name in sorted(yard.workflows):
        schema = yard.workflows[name].input_schema()
        sample = sample_input(schema, schema)
        if schema and not jsonschema.validators.validator_for(schema)(schema).is_valid(sample):
            continue
        if schema.get("type") == "object" or "properties" in schema:
            return name, sample  # named fields: the workflow's real input
        fallback = fallback or (name, sample)
    if fallback is not None:
        return fallback
    names = sorted(yard.workflows)
    return (names[0], None) if names else ("", None)


def sample_input(schema: dict[str, Any], root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value shaped like ``schema`` (its examples or default where it gives them,
    required fields only, bounds and enums respected; ``$ref`` followed within ``root``),
    for the printed curl."""
    root = schema if root is None else root
    if depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return sample_input(target, root, depth + 1)
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        choices = [c for c in schema.get(key) or [] if c.get("type") != "null"]
        if choices:
            return sample_input(choices[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {
            k: sample_input(props.get(k) or {}, root, depth + 1)
            for k in schema.get("required") or []
        }
    if kind == "string":
        text = "example"
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        text = text.ljust(low, "x")
        return text if high is None else text[:high]
    if kind in ("integer", "number"):
        value = 1
        for bound, step in (("minimum", 0), ("exclusiveMinimum", 1)):
            if isinstance(schema.get(bound), int | float):
                value = max(value, math.ceil(schema[bound]) + step)
        return value if kind == "integer" else float(value)
    if kind == "array":
        return [sample_input(schema.get("items") or {}, root, depth + 1)] * int(
            schema.get("minItems", 0)
        )
    return {"boolean": True}.get(str(kind))


async def _serve_and_work(
    fastapi_app: Any,
    worker: Any,
    host: str,
    port: int,
    base: str,
    yard: Runyard,
    key: str,
    where: str,
) -> None:
    from ..server import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server_task = asyncio.create_task(serve(fastapi_app, host, port, install_signals=False))
    worker_task = asyncio.create_task(worker.run())
    stopper = asyncio.create_task(stop.wait())
    try:
        if await _ready(base, server_task):
            _banner(base, key, where, yard)
        await asyncio.wait({server_task, worker_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        output.err.print("runyard dev: stopping", highlight=False)
        # serve() returns once the server's "stopping" event is set and open requests
        # are answered; the worker finishes or hands back its items
        fastapi_app.state.runyard.stopping.set()
        worker.stop()
        stopper.cancel()
        await asyncio.gather(server_task, worker_task, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for task in (server_task, worker_task):
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _ready(base: str, server_task: asyncio.Task[None]) -> bool:
    """Wait until the server answers ``/healthz`` (False if it stopped first)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline and not server_task.done():
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(base + "/healthz")).status_code < 500:
                    return True
            await asyncio.sleep(0.05)
    return not server_task.done()


def _banner(base: str, key: str, where: str, yard: Runyard) -> None:
    db = describe_database(yard.settings.database_url)
    names = ", ".join(sorted(yard.workflows)) or "(none)"
    lines = [
        "",
        "Runyard dev: server + worker in one process (Ctrl-C stops both)",
        f"  Database:  {db}",
        f"  Workflows: {names}",
        f"  URL:       {base}",
        f"  API docs:  {base}/docs",
        f"  API key:   {key}   ({where})",
        "",
        "Start a run (live mode answers with its result):",
        f"  {example_curl(base, key, yard)}",
        "",
        "Or with the CLI:",
        f"  export RUNYARD_URL={base} RUNYARD_API_KEY={key}",
        "  runyard runs ls",
        "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
