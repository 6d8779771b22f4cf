"""Settings from ``RUNYARD_*`` environment variables (flags override them)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: Where runs are kept when nothing says otherwise: a folder of its own, which the SQLite
#: store gives a ``.gitignore`` when it opens it, whoever opens it (the dev key file lives
#: beside the database).
DEFAULT_URL = "sqlite:///.runyard/runyard.db"
#: How long finished runs are kept before they are purged, days (RUNYARD_RETENTION_DAYS).
DEFAULT_RETENTION_DAYS = 30.0


def redacted_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) shown
    as ``***``, fit to print."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    if netloc == parts.netloc and "password" not in parts.query.lower():
        return url  # (urlunsplit would drop the empty authority of sqlite:///x)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def env_number(name: str, default: float, *, integer: bool = False) -> float:
    """The positive, finite number in environment variable ``name`` (``default`` if unset
    or empty); a clear ValueError naming the variable otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, not {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, not {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime settings.

    ``RUNYARD_DATABASE_URL``   database (default ``sqlite:///.runyard/runyard.db``)
    ``RUNYARD_LEASE_S``        how long a worker's claim lasts without a heartbeat (15)
    ``RUNYARD_POLL_S``         polling backstop when no wake-up arrives (0.5)
    ``RUNYARD_EVENT_LOOKBACK_S`` how far back a new wait sees notified events (300)
    ``RUNYARD_DB_RETRY_S``     how long database errors are retried before giving up (30)
    ``RUNYARD_SQLITE_SYNCHRONOUS`` FULL (default) or NORMAL
    ``RUNYARD_RETENTION_DAYS`` ended runs older than this are purged (30; a positive
    number of days, fractions allowed)
    """

    database_url: str = DEFAULT_URL
    lease_s: float = 15.0
    poll_s: float = 0.5
    event_lookback_s: float = 300.0
    db_retry_s: float = 30.0
    retention_days: float = DEFAULT_RETENTION_DAYS

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        return cls(
            database_url=database_url or os.environ.get("RUNYARD_DATABASE_URL") or DEFAULT_URL,
            lease_s=env_number("RUNYARD_LEASE_S", 15.0),
            poll_s=env_number("RUNYARD_POLL_S", 0.5),
            event_lookback_s=env_number("RUNYARD_EVENT_LOOKBACK_S", 300.0),
            db_retry_s=env_number("RUNYARD_DB_RETRY_S", 30.0),
            retention_days=env_number("RUNYARD_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
        )
