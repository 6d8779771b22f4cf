"""Helpers for the end-to-end tests (imported by the tests only, never by workers)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runyard import Run, Runyard
from tests.apps.ledger import LEDGER_ENV
from tests.conftest import WorkerProcess
from tests.waiting import NotYet, wait_until_async


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger line: the fields the step wrote, then the writer's pid and time."""

    fields: tuple[str, ...]
    pid: int
    at: float


def read_ledger(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        parts = line.split()
        entries.append(Entry(tuple(parts[:-2]), int(parts[-2]), float(parts[-1])))
    return entries


def spawn(
    procs: list[WorkerProcess],
    app: str,
    db_url: str,
    tmp_path: Path,
    *,
    concurrency: int = 8,
    lease_s: float = 2.0,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start ``runyard worker tests.apps.<app>:yard``, writing to the test's ledger; its
    output goes to ``tmp_path / "w.log"``."""
    w = WorkerProcess(
        app=f"tests.apps.{app}:yard",
        db_url=db_url,
        concurrency=concurrency,
        lease_s=lease_s,
        env={LEDGER_ENV: str(tmp_path / "ledger.txt"), **(env or {})},
        log=tmp_path / "w.log",
    )
    # WorkerProcess.start() opens the log file for the child and never closes the
    # parent's copy, leaving it to the garbage collector when start() returns: a
    # ResourceWarning, which pytest turns into an error here. The child has its own
    # descriptor, so the parent's copy being closed by the collector is harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        w.start()
    procs.append(w)
    return w


async def wait_registered(yard: Runyard, names: Iterable[str], timeout: float = 30) -> None:
    """Until a worker has published every workflow in ``names`` to the registry."""
    await yard.ensure_ready()
    wanted = list(names)

    async def published() -> bool:
        for name in wanted:
            if await yard.db.read(yard.store.get_workflow, name) is None:
                return False
        return True

    await wait_until_async(
        published, timeout=timeout, interval=0.1, what=f"workflows {wanted} published"
    )


async def wait_terminal(
    yard: Runyard, run_ids: Sequence[str], timeout: float, interval: float = 0.25
) -> dict[str, Run]:
    """Every run once terminal; fails (naming the stragglers) after ``timeout`` s."""
    done: dict[str, Run] = {}

    async def all_ended() -> dict[str, Run] | NotYet:
        left: dict[str, str] = {}
        for run_id in run_ids:
            if run_id not in done:
                run = await yard.get_run(run_id)
                if run.terminal:
                    done[run_id] = run
                else:
                    left[run_id] = run.status.value
        if left:
            return NotYet({"not terminal": len(left), "first": dict(list(left.items())[:10])})
        return done

    return await wait_until_async(
        all_ended,
        timeout=timeout,
        interval=interval,
        what=f"all {len(run_ids)} runs terminal",
    )


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of the closed intervals ``(start, end)`` that overlap."""
    points: list[tuple[float, int]] = []
    for start, end in intervals:
        points.append((start, 1))
        points.append((end, -1))
    # At equal times a start sorts before an end: touching intervals count as overlapping.
    points.sort(key=lambda p: (p[0], -p[1]))
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def intervals(entries: Iterable[Entry], tag: str) -> list[tuple[float, float]]:
    """Pair each ``tag start KEY`` line with the ``tag end KEY`` line of the same key and
    process; a start without an end (a killed execution) lasts until +infinity."""
    starts: dict[tuple[str, int], float] = {}
    out: list[tuple[float, float]] = []
    for e in entries:
        if len(e.fields) < 3 or e.fields[0] != tag:
            continue
        key = (e.fields[2], e.pid)
        if e.fields[1] == "start":
            starts[key] = e.at
        elif e.fields[1] == "end":
            out.append((starts.pop(key), e.at))
    out.extend((s, float("inf")) for s in starts.values())
    return out
