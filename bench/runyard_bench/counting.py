"""Statements and transactions per run (``sql_per_run``, ``sql_per_step``), counted in
one process through the store's observer (:class:`runyard.store.tx.StoreObserver`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from runyard import Runyard

from .harness import BenchOptions, log, run_one


class SqlCounter:
    """A store observer that counts: named statements by name, transactions (and write
    transactions), PostgreSQL pipeline syncs (the waits for answers inside a pipelined
    write). The store calls it from the event loop and its writing thread alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_query: collections.Counter[str] = collections.Counter()
        self.txns = 0
        self.write_txns = 0
        self.syncs = 0

    def statements(self, name: str, count: int) -> None:
        with self._lock:
            self.by_query[name] += count

    def transaction(self, write: bool) -> None:
        with self._lock:
            self.txns += 1
            self.write_txns += write

    def pipeline_sync(self) -> None:
        with self._lock:
            self.syncs += 1

    def snapshot(self) -> tuple[collections.Counter[str], int, int, int]:
        with self._lock:
            return collections.Counter(self.by_query), self.txns, self.write_txns, self.syncs


@contextlib.contextmanager
def counting_sql(y: Runyard) -> Iterator[SqlCounter]:
    """Count what ``y``'s store runs meanwhile: every named statement (``Tx.q``/``q1``/
    ``exec``/``send``, once even where one is built on another; ``send_many`` one per
    row), every transaction, every pipeline sync."""
    store = y.store
    if store.observer is not None:
        raise RuntimeError("the store is observed already")
    counter = SqlCounter()
    store.observer = counter
    try:
        yield counter
    finally:
        store.observer = None


async def sql_counts(y: Runyard, opts: BenchOptions) -> dict[str, dict[str, Any]]:
    """Statements and transactions per sequential run, producer and worker together."""
    w = y.worker(concurrency=opts.concurrency, shutdown_timeout_s=5)
    task = asyncio.create_task(w.run())
    out: dict[str, dict[str, Any]] = {}
    try:
        cases = [
            ("noop", "noop", 0),
            ("three_steps", "three_steps", 0),
            ("k_steps(0)", "k_steps", 0),
            (f"k_steps({opts.step_count})", "k_steps", opts.step_count),
        ]
        for _label, wf, arg in cases:
            for _ in range(5):
                await run_one(y, wf, arg)
        n = opts.sql_runs
        with counting_sql(y) as stats:
            for label, wf, arg in cases:
                q0, t0, w0, s0 = stats.snapshot()
                c0, wall0 = time.process_time(), time.perf_counter()
                for _ in range(n):
                    await run_one(y, wf, arg)
                c1, wall1 = time.process_time(), time.perf_counter()
                q1, t1, w1, s1 = stats.snapshot()
                q1.subtract(q0)
                by = {k: round(v / n, 2) for k, v in sorted(q1.items(), key=lambda kv: -kv[1]) if v}
                out[label] = {
                    "n": n,
                    "statements_per_run": round(sum(q1.values()) / n, 2),
                    "transactions_per_run": round((t1 - t0) / n, 2),
                    "write_transactions_per_run": round((w1 - w0) / n, 2),
                    "pipeline_syncs_per_run": round((s1 - s0) / n, 2),
                    "by_query": by,
                    "wall_ms_per_run": round(1000 * (wall1 - wall0) / n, 3),
                    "cpu_ms_per_run": round(1000 * (c1 - c0) / n, 3),
                }
                log(
                    f"sql {label}: {out[label]['statements_per_run']} statements, "
                    f"{out[label]['transactions_per_run']} transactions per run; {by}"
                )
    finally:
        w.stop()
        await asyncio.wait_for(task, 60)
    return out


__all__ = ["SqlCounter", "counting_sql", "sql_counts"]
