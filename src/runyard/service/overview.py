"""What the dashboard's overview shows, read so that its cost does not grow with the
history: runs not ended by status and per workflow (counted up to
:data:`OVERVIEW_COUNT_CAP`), runs ended and failed per minute over the last hour and per
hour over the last day (a range of the finish-time index; buckets that can no longer
change are kept, so a refresh reads only the newest), live workers with the items they
hold, and credits by workflow and day."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..models import EndedCount, HeldItem, RunStatus, WorkerRecord
from ..rules import invalid
from ..store import overview as reads
from .catalog import CatalogMixin

#: Counts of runs not ended stop here: a larger backlog reads "more than" it (a count
#: costs what it counts; /metrics has the exact figures). The SQL stops one past it
#: (store/overview.py COUNT_STOP, written out in the queries).
OVERVIEW_COUNT_CAP = reads.COUNT_STOP - 1
#: The statuses counted as failures in the activity charts.
FAILED_STATUSES = frozenset({RunStatus.FAILED.value, RunStatus.CRASHED.value})
#: A bucket that ended this long ago no longer changes (a run's finish time is written in
#: a transaction lasting milliseconds; the same margin as the metrics' two seconds, more).
_SETTLED_S = 5.0
#: At most this many held items are listed.
HELD_MAX = 500


@dataclass(frozen=True, slots=True)
class Activity:
    """Runs that ended per bucket of ``bucket_s`` seconds, oldest first: ``starts[i]`` is
    bucket i's start, ``ended[i]`` the runs that ended in it, ``failed[i]`` those that
    ended FAILED or CRASHED; ``by_status`` sums the window by final status."""

    bucket_s: float
    starts: list[float]
    ended: list[int]
    failed: list[int]
    by_status: dict[str, int]


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """A live worker and the items it holds now."""

    worker: WorkerRecord
    held: list[HeldItem]


@dataclass(frozen=True, slots=True)
class UsageSeries:
    """Credits per workflow on each of ``days`` (UTC dates, oldest first)."""

    days: list[str]
    credits: dict[str, list[float]]
    total: float


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the overview page shows, read at ``at`` (the database's clock)."""

    at: float
    cap: int
    open: dict[str, int]
    queues: dict[str, dict[str, int]]
    last_hour: Activity
    last_day: Activity
    workers: list[WorkerLoad]
    #: Items held by a worker that no longer heartbeats (its leases not yet expired).
    orphaned: list[HeldItem] = field(default_factory=list)
    usage: UsageSeries | None = None


class OverviewMixin(CatalogMixin):
    #: Settled buckets per width: bucket number -> runs by final status.
    _settled: dict[float, dict[int, dict[str, int]]]
    #: The last overview read: (when, its arguments, it).
    _last_overview: tuple[float, tuple[float, int], Overview]

    async def open_run_counts(self, cap: int = OVERVIEW_COUNT_CAP) -> dict[str, int]:
        """Runs not ended by status, each counted up to ``cap`` (at most
        :data:`OVERVIEW_COUNT_CAP`; a count above it reads "more than ``cap``")."""
        cap = min(cap, OVERVIEW_COUNT_CAP)
        rows = await self.core.read(reads.open_runs, cap + 1)
        return {r.status: r.n for r in rows}

    async def workflow_queues(self, cap: int = OVERVIEW_COUNT_CAP) -> dict[str, dict[str, int]]:
        """Runs not ended per published workflow and status, each counted up to ``cap`` (at
        most :data:`OVERVIEW_COUNT_CAP`)."""
        cap = min(cap, OVERVIEW_COUNT_CAP)
        rows = await self.core.read(reads.workflow_queues, cap + 1)
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r.workflow or "", {})[r.status] = r.n
        return out

    async def run_activity(
        self, window_s: float, bucket_s: float, *, now: float | None = None
    ) -> Activity:
        """Runs ended and failed per ``bucket_s`` over the last ``window_s`` seconds (until
        ``now``, the database's clock by default), the newest bucket partly filled."""
        if bucket_s <= 0:
            raise invalid("bucket_s", "bucket_s must be positive", "not positive")
        if window_s < bucket_s or window_s / bucket_s > 1440:
            raise invalid("window_s", "window_s must hold 1 to 1440 buckets", "out of range")
        if now is None:
            now = await self.core.read(self.core.store.now, inline=True)
        last = int(now // bucket_s)
        first = last - round(window_s / bucket_s) + 1
        settled = self._settled_buckets(bucket_s)
        for old in [b for b in settled if b < first]:
            del settled[old]
        missing = next((b for b in range(first, last + 1) if b not in settled), last + 1)
        fresh: dict[int, dict[str, int]] = {}
        if missing <= last:
            since = missing * bucket_s
            rows: list[EndedCount] = await self.core.read(
                reads.ended_runs, since, now + 1.0, bucket_s
            )
            for r in rows:
                fresh.setdefault(r.bucket, {})[r.status] = r.n
            for b in range(missing, last + 1):
                if (b + 1) * bucket_s <= now - _SETTLED_S:
                    settled[b] = fresh.get(b, {})
        starts: list[float] = []
        ended: list[int] = []
        failed: list[int] = []
        by_status: dict[str, int] = {}
        for b in range(first, last + 1):
            counts = settled.get(b) if b < missing else fresh.get(b, {})
            counts = counts or {}
            starts.append(b * bucket_s)
            ended.append(sum(counts.values()))
            failed.append(sum(n for s, n in counts.items() if s in FAILED_STATUSES))
            for s, n in counts.items():
                by_status[s] = by_status.get(s, 0) + n
        return Activity(bucket_s, starts, ended, failed, by_status)

    def _settled_buckets(self, bucket_s: float) -> dict[int, dict[str, int]]:
        if not hasattr(self, "_settled"):
            self._settled = {}
        return self._settled.setdefault(bucket_s, {})

    async def worker_loads(
        self, seen_within_s: float, limit: int = HELD_MAX
    ) -> tuple[list[WorkerLoad], list[HeldItem]]:
        """Live workers (heartbeat within ``seen_within_s``) with the items each holds,
        and the items held by workers that are not live; up to ``limit`` items in all."""
        live = await self.workers(seen_within_s)
        held = await self.core.read(reads.held_items, limit)
        by_owner: dict[str, list[HeldItem]] = {w.id: [] for w in live}
        orphaned: list[HeldItem] = []
        for lease in held:
            if lease.owner in by_owner:
                by_owner[lease.owner].append(lease)
            else:
                orphaned.append(lease)
        return [WorkerLoad(w, by_owner[w.id]) for w in live], orphaned

    async def usage_series(self, days: int, *, now: float | None = None) -> UsageSeries:
        """Credits per workflow on each of the last ``days`` UTC days (today included)."""
        if not 1 <= days <= 366:
            raise invalid("days", "days must be from 1 to 366", "out of range")
        end = time.time() if now is None else now
        today = int(end // 86400)
        names = [
            time.strftime("%Y-%m-%d", time.gmtime(d * 86400))
            for d in range(today - days + 1, today + 1)
        ]
        report = await self.usage(since=(today - days + 1) * 86400.0, until=end + 1.0)
        index = {day: i for i, day in enumerate(names)}
        credits: dict[str, list[float]] = {}
        for line in report.lines:
            if line.day in index:
                credits.setdefault(line.workflow, [0.0] * days)[index[line.day]] += line.credits
        return UsageSeries(names, dict(sorted(credits.items())), report.total)

    async def overview(
        self, *, seen_within_s: float = 30.0, usage_days: int = 14, max_age_s: float = 0.0
    ) -> Overview:
        """Everything the overview page shows; with ``max_age_s``, the one read for the same
        arguments less than that long ago, if any (every open overview of a process, each
        refreshing on the same changes, then costs one read)."""
        key = (seen_within_s, usage_days)
        last = getattr(self, "_last_overview", None)
        if last is not None and last[1] == key and time.monotonic() - last[0] < max_age_s:
            cached: Overview = last[2]
            return cached
        now = await self.core.read(self.core.store.now, inline=True)
        workers, orphaned = await self.worker_loads(seen_within_s)
        overview = Overview(
            at=now,
            cap=OVERVIEW_COUNT_CAP,
            open=await self.open_run_counts(),
            queues=await self.workflow_queues(),
            last_hour=await self.run_activity(3600.0, 60.0, now=now),
            last_day=await self.run_activity(86400.0, 3600.0, now=now),
            workers=workers,
            orphaned=orphaned,
            usage=await self.usage_series(usage_days, now=now),
        )
        self._last_overview = (time.monotonic(), key, overview)
        return overview
