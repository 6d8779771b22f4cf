"""Settings from ``RUNYARD_*`` environment variables (flags override them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .store import DEFAULT_URL


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime settings.

    ``RUNYARD_DATABASE_URL``   database (default ``sqlite:///runyard.db``)
    ``RUNYARD_LEASE_S``        how long a worker's claim lasts without a heartbeat (15)
    ``RUNYARD_POLL_S``         polling backstop when no wake-up arrives (0.5)
    ``RUNYARD_EVENT_LOOKBACK_S`` how far back a new wait sees notified events (300)
    ``RUNYARD_DB_RETRY_S``     how long database errors are retried before giving up (30)
    ``RUNYARD_SQLITE_SYNCHRONOUS`` FULL (default) or NORMAL
    """

    database_url: str = DEFAULT_URL
    lease_s: float = 15.0
    poll_s: float = 0.5
    event_lookback_s: float = 300.0
    db_retry_s: float = 30.0

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        return cls(
            database_url=database_url or os.environ.get("RUNYARD_DATABASE_URL") or DEFAULT_URL,
            lease_s=_float("RUNYARD_LEASE_S", 15.0),
            poll_s=_float("RUNYARD_POLL_S", 0.5),
            event_lookback_s=_float("RUNYARD_EVENT_LOOKBACK_S", 300.0),
            db_retry_s=_float("RUNYARD_DB_RETRY_S", 30.0),
        )
