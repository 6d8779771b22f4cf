"""Settings of the HTTP server, from ``RUNYARD_*`` environment variables.

``RUNYARD_DATABASE_URL``       database, when ``create_app`` builds the Runyard itself
``RUNYARD_API_KEY``            an extra key accepted with the admin scope (``runyard dev``)
``RUNYARD_MAX_BODY_BYTES``     largest request body; more answers 413 (1 MiB)
``RUNYARD_LIVE_CAPACITY``      concurrent live waits (live runs, result long-polls); more
                               answers 429 with ``Retry-After`` (64)
``RUNYARD_LIVE_WAIT_S``        default ``wait_timeout`` of a live run (30)
``RUNYARD_SERVER_DB_RETRY_S``  how long the server retries a database error before it
                               answers 503 (5: a client must learn quickly that the
                               database is away; workers keep their own, longer window)
``RUNYARD_SSE_PING_S``         interval of the comment pings of an event stream (15)
``RUNYARD_SHUTDOWN_S``         how long a stopping server waits for open requests (5)
``RUNYARD_WORKER_SEEN_S``      a worker counts as live when it heartbeated this recently (30)
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _number(name: str, default: float, *, integer: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What the server needs besides the Runyard it serves (see the module docstring)."""

    database_url: str | None = None
    api_key: str | None = None
    max_body_bytes: int = 1024 * 1024
    live_capacity: int = 64
    live_wait_s: float = 30.0
    db_retry_s: float = 5.0
    sse_ping_s: float = 15.0
    shutdown_timeout_s: float = 5.0
    worker_seen_s: float = 30.0

    @classmethod
    def from_env(cls) -> ServerSettings:
        return cls(
            database_url=os.environ.get("RUNYARD_DATABASE_URL") or None,
            api_key=os.environ.get("RUNYARD_API_KEY") or None,
            max_body_bytes=int(_number("RUNYARD_MAX_BODY_BYTES", 1024 * 1024, integer=True)),
            live_capacity=int(_number("RUNYARD_LIVE_CAPACITY", 64, integer=True)),
            live_wait_s=_number("RUNYARD_LIVE_WAIT_S", 30.0),
            db_retry_s=_number("RUNYARD_SERVER_DB_RETRY_S", 5.0),
            sse_ping_s=_number("RUNYARD_SSE_PING_S", 15.0),
            shutdown_timeout_s=_number("RUNYARD_SHUTDOWN_S", 5.0),
            worker_seen_s=_number("RUNYARD_WORKER_SEEN_S", 30.0),
        )
