"""Measurements that need nothing of Runyard: percentiles, CPU seconds of processes (the
HTTP client process imports this, not the harness)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), as the peers use."""
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


#: (Linux /proc; None elsewhere.)
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def postgres_cpu_s() -> float | None:
    """CPU of every process named postgres on this machine (the server under test)."""
    total, found = 0.0, False
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for p in pids:
        try:
            with open(f"/proc/{p}/comm") as f:
                if not f.read().startswith("postgres"):
                    continue
        except OSError:
            continue
        cpu = proc_cpu_s(int(p))
        if cpu is not None:
            total += cpu
            found = True
    return total if found else None


__all__ = ["percentile", "postgres_cpu_s", "proc_cpu_s"]
