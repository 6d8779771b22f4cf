"""An append-only ledger that workflow steps in worker processes write to.

Each call appends one line with a single ``write()`` on an ``O_APPEND`` descriptor, so
lines from several processes never interleave, and a process killed with SIGKILL
leaves either its whole line or nothing. Every line ends with the writer's pid and
``time.time()`` (the same clock the database uses on this host: PostgreSQL's
``clock_timestamp()`` and SQLite's ``ry_now()``), so tests can compare ledger times with
the times recorded in the database.

The file is named by the environment variable ``RUNYARD_TEST_LEDGER``, which the test
passes to its worker processes.
"""

from __future__ import annotations

import os
import threading
import time

LEDGER_ENV = "RUNYARD_TEST_LEDGER"

_fd: int | None = None
_lock = threading.Lock()


def _descriptor() -> int:
    global _fd
    with _lock:
        if _fd is None:
            _fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return _fd


def record(*fields: object) -> None:
    """Append ``fields pid time`` as one line."""
    line = " ".join(str(f) for f in fields) + f" {os.getpid()} {time.time()!r}\n"
    os.write(_descriptor(), line.encode())
