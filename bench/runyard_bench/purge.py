"""The purging process of ``runyard bench --scale``'s claim figures:
``python -m runyard_bench.purge URL CUTOFF LIMIT`` purges runs ended before ``CUTOFF``
in a loop, as the retention of a worker does, until stopped or none is left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from runyard import Runyard


class PurgeProc:
    """``python -m runyard_bench.purge URL CUTOFF LIMIT`` (see the module), stopped with
    SIGTERM."""

    def __init__(self, url: str, cutoff: float, limit: int, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runyard_bench.purge", url, repr(cutoff), str(limit)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def first_batch(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # after the first batch
        if not line.startswith("purging"):
            raise RuntimeError(f"purge process: {line!r} (exit {self.proc.poll()})")

    def stop(self) -> dict[str, Any]:
        """Stop it; what it did: ``{"purged": n, "seconds": s, "finished": bool}``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"purge process exited with {self.proc.returncode}: {out!r}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


def main(argv: list[str]) -> None:
    """Purge until SIGTERM or none is left; "purging" on stdout after the first batch,
    what was done as one JSON line at the end."""
    url, cutoff, limit = argv[0], float(argv[1]), int(argv[2])
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    y = Runyard(url)
    total, finished, told = 0, False, False
    t = time.perf_counter()
    try:
        limit = limit or y.store.purge_batch
        while not stop:
            started = time.monotonic()
            n = y.db.write_sync(y.store.purge_txn, cutoff, limit)
            if not told:
                print("purging", flush=True)  # the first batch is done
                told = True
            total += n
            if n < limit:
                finished = True
                break
            time.sleep((time.monotonic() - started) * y.store.purge_rest)  # as retention
    finally:
        print(
            json.dumps({"purged": total, "seconds": time.perf_counter() - t, "finished": finished}),
            flush=True,
        )
        y.close()


__all__ = ["PurgeProc", "main"]

if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: python -m runyard_bench.purge URL CUTOFF LIMIT")
    main(sys.argv[1:])
