"""What proves a worker process dead before its leases expire, on one host: the host's
identity (name, boot, pid namespace: a pid means the same process only within one) and
a process's start time (a pid reused by another process is not the worker)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def host_id() -> str | None:
    """This host as pids are seen from it, or None where that cannot be told (no
    ``/proc``): then no worker is judged by its pid."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_started(pid: int) -> float | None:
    """When process ``pid`` started, in clock ticks since boot; None if unknown."""
    fields = _stat(pid)
    return float(fields[19]) if fields is not None and len(fields) > 19 else None


def process_gone(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` is certainly gone: no
    such pid, a zombie, or another process with the pid. A process that exists but
    cannot be read (``/proc`` mounted with ``hidepid``) counts as alive."""
    fields = _stat(pid)
    if fields is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    if fields[0] in ("Z", "X"):
        return True
    return len(fields) > 19 and float(fields[19]) != started
