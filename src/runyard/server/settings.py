"""Settings of the HTTP server, from ``RUNYARD_*`` environment variables.

``RUNYARD_DATABASE_URL``       database, when ``create_app`` builds the Runyard itself
``RUNYARD_API_KEY``            an extra key accepted with the admin scope (``runyard dev``);
                               a key issued with ``runyard keys create`` keeps its stored
                               scopes (and its revocation)
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
``OTEL_*``                     any standard OpenTelemetry variable set (and
                               ``OTEL_SDK_DISABLED`` not ``true``) turns tracing on: a span
                               per request (FastAPI's telemetry), run and step attempt
                               (runyard.telemetry); off otherwise
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import env_number
from ..telemetry import otel_configured


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
    #: How long an MCP tool call at ``/mcp`` waits for its run (``RUNYARD_MCP_WAIT``).
    mcp_wait_s: float = 30.0
    #: FastAPI's OpenTelemetry instrumentation of every request (see the module docstring).
    telemetry: bool = False

    @classmethod
    def from_env(cls) -> ServerSettings:
        return cls(
            database_url=os.environ.get("RUNYARD_DATABASE_URL") or None,
            api_key=os.environ.get("RUNYARD_API_KEY") or None,
            max_body_bytes=int(env_number("RUNYARD_MAX_BODY_BYTES", 1024 * 1024, integer=True)),
            live_capacity=int(env_number("RUNYARD_LIVE_CAPACITY", 64, integer=True)),
            live_wait_s=env_number("RUNYARD_LIVE_WAIT_S", 30.0),
            db_retry_s=env_number("RUNYARD_SERVER_DB_RETRY_S", 5.0),
            sse_ping_s=env_number("RUNYARD_SSE_PING_S", 15.0),
            shutdown_timeout_s=env_number("RUNYARD_SHUTDOWN_S", 5.0),
            worker_seen_s=env_number("RUNYARD_WORKER_SEEN_S", 30.0),
            mcp_wait_s=env_number("RUNYARD_MCP_WAIT", 30.0),
            telemetry=otel_configured(),
        )
