"""Firing schedules, with no leader: every worker, ``runyard server`` and ``runyard dev``
run :class:`Scheduler`.

A pass claims the schedules that are due, earliest first, in batches (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL: two schedulers never hold one schedule, each takes the next
ones; SQLite's write lock serializes them). In that transaction each due fire time gets
its row in ``schedule_fires`` (unique per schedule and fire time) with what the catch-up
window and the overlap policy decided, and the schedule advances to its next fire time.
The runs of the fires that start are written in the same transaction, under a run id
derived from the schedule and the fire time (:func:`~runyard.service.schedules.fire_run_id`),
as copies of the run the service's start path made once for the schedule
(:class:`Templates`, :meth:`~runyard.service.starting.StartMixin.new_run`); the fire rows,
the schedules' new state and the runs are each one statement per batch (:class:`FireBook`).
A fire with no prepared run (a task's schedule, a start that cancels the previous run) is
recorded ``pending`` and its run started after the commit through
:meth:`~runyard.service.starting.StartMixin.start_run`: a fire whose scheduler died before
its run was written stays ``pending`` and any scheduler starts it after
:data:`PENDING_STALE_S`, under the same run id, so it starts once.

Between passes the scheduler sleeps until the earliest ``due_at`` of all schedules (one
indexed read), or until a change is announced (a schedule created, updated or resumed
announces its due time to every process), with a backstop of :data:`BACKSTOP_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import jsonutil
from ..errors import RunIdConflict, RunyardError, StoreUnavailable
from ..models import TERMINAL, NewRun, RunStatus
from ..rules import BUFFER_MAX_FIRES
from ..store.schedules import SCHEDULES_CHANGED
from ..store.tx import Row, Tx
from .cron import cron_of, jitter_offset
from .schedule_spec import ScheduleSpec, fire_run_id, fire_time
from .starting import retraced

if TYPE_CHECKING:
    from ..store import Store
    from .schedules import SchedulesMixin

log = logging.getLogger("runyard.scheduler")

#: Schedules claimed per transaction (their fires, schedule updates and runs are written
#: in it, each kind as one batch).
BATCH = 200
#: Schedules whose prepared run (:class:`Template`) a scheduler keeps.
TEMPLATES_MAX = 20_000
#: A pending fire older than this (its scheduler stopped before writing its run) is
#: started by whichever scheduler sees it.
PENDING_STALE_S = 10.0
#: How often a scheduler looks for such fires.
SWEEP_S = 5.0
#: While a buffered fire waits for the previous run to end, its schedule is looked at
#: again this often.
BUFFER_RECHECK_S = 1.0
#: The longest a scheduler sleeps without looking (a wake-up lost costs this, at most).
BACKSTOP_S = 5.0
#: How often, about, a scheduler deletes fire records that have no run (skipped, missed,
#: failed to start) past the retention of runs, and at most how many batches then.
PURGE_FIRES_S = 600.0
PURGE_FIRES_BATCHES = 20
#: A scheduler prepares the runs of the schedules due within this many seconds while it
#: waits for them (:class:`Templates`), so that their first fire does not wait for it.
PREPARE_AHEAD_S = 2.0
#: The least time between two passes (many wake-ups at once make one pass).
MIN_PASS_S = 0.05
#: Missed fires recorded one by one after downtime; beyond them, the schedule jumps to
#: its catch-up window (they are counted once, as one more skipped).
MISSED_RECORDED_MAX = 100
#: Run statuses that pause a schedule with ``pause_on_failure``.
FAILED = frozenset({RunStatus.FAILED, RunStatus.CRASHED, RunStatus.INVALID})


def decide(policy: str, active: bool, buffered: int) -> str:
    """What a fire does under ``policy`` while the previous run is ``active`` and
    ``buffered`` fires wait: ``start``, ``cancel`` (the previous run, then start),
    ``buffer`` or ``skip``."""
    if not active or policy == "allow_all":
        return "start"
    if policy == "cancel_other":
        return "cancel"
    if policy == "buffer_one":
        return "buffer" if buffered == 0 else "skip"
    if policy == "buffer_all":
        return "buffer" if buffered < BUFFER_MAX_FIRES else "skip"
    return "skip"


@dataclass(slots=True)
class FireStart:
    """A fire whose run is to be started (after canceling ``cancel`` when given)."""

    schedule_id: str
    fire_at: float
    run_id: str
    spec: ScheduleSpec
    cancel: str | None = None


@dataclass(slots=True)
class FireBook:
    """What one transaction records about fires, written together at its end
    (:meth:`flush`): the new fire rows, the schedules' new state, and the runs of the
    fires whose run was prepared before the transaction (``runs``: schedule id -> its
    :class:`Template`, for the spec as claimed). ``existing``: the fires recorded before,
    as read once for a pass; None: asked of the database fire by fire (a trigger, a
    backfill)."""

    store: Store
    tx: Tx
    existing: set[tuple[str, float]] | None = None
    runs: Mapping[str, Template] = field(default_factory=dict)
    rows: dict[tuple[str, float], dict[str, Any]] = field(default_factory=dict)
    advances: list[dict[str, Any]] = field(default_factory=list)
    starts: list[FireStart] = field(default_factory=list)
    #: Runs created in this transaction (after :meth:`flush`).
    started: int = 0

    def has(self, schedule_id: str, fire_at: float) -> bool:
        """Whether the fire has its row (recorded before, or in this transaction)."""
        key = (schedule_id, fire_at)
        if key in self.rows:
            return True
        if self.existing is None:
            return self.store.get_fire(self.tx, schedule_id, fire_at) is not None
        return key in self.existing

    def record(
        self, schedule_id: str, fire_at: float, kind: str, state: str, run_id: str | None
    ) -> bool:
        """Record a fire; False when it has its row already (fired before, by anyone)."""
        if self.has(schedule_id, fire_at):
            return False
        self.rows[(schedule_id, fire_at)] = {
            "schedule_id": schedule_id,
            "fire_at": fire_at,
            "kind": kind,
            "state": state,
            "run_id": run_id,
            "error": None,
        }
        return True

    def restate(self, schedule_id: str, fire_at: float, state: str, run_id: str | None) -> None:
        row = self.rows.get((schedule_id, fire_at))
        if row is not None:
            row.update(state=state, run_id=run_id)
        else:
            self.store.set_fire_state_txn(self.tx, schedule_id, fire_at, state, run_id)

    def flush(self) -> list[FireStart]:
        """Write what was recorded. The run of a fire whose run was prepared is created
        here, in the same transaction (its fire recorded ``started``); the others are
        returned, recorded ``pending``, to start after the commit."""
        later: list[FireStart] = []
        runs: list[NewRun] = []
        old: list[tuple[str, float]] = []  # (buffered fires: their rows exist)
        for s in self.starts:
            template = self.runs.get(s.schedule_id)
            if template is None or s.cancel is not None:
                later.append(s)
                continue
            runs.append(retraced(template.run, s.run_id))
            row = self.rows.get((s.schedule_id, s.fire_at))
            if row is not None:
                row["state"] = "started"
            else:
                old.append((s.schedule_id, s.fire_at))
        # (the runs first: their fire lag is counted to their insert)
        if runs:
            self.store.create_fire_runs_txn(self.tx, runs)
        self.store.record_fires_txn(self.tx, list(self.rows.values()))
        self.store.advance_schedules_txn(self.tx, self.advances)
        if old:
            self.store.fires_started_txn(self.tx, old)
        self.started = len(runs)
        self.rows, self.advances, self.starts = {}, [], []
        return later


@dataclass(slots=True)
class Firing:
    """One schedule's state inside a firing transaction: what its fires decide."""

    book: FireBook
    row: Row
    spec: ScheduleSpec
    active: bool
    last_run: str | None
    buffered: int
    fired: int = 0
    skipped: int = 0
    created: int = 0
    starts: list[FireStart] = field(default_factory=list)

    @classmethod
    def of(cls, book: FireBook, row: Row, last_status: str | None) -> Firing:
        last = row["last_run_id"]
        active = last is not None and (
            last_status is None or RunStatus(last_status) not in TERMINAL
        )
        template = book.runs.get(str(row["id"]))  # (its spec as claimed, parsed)
        spec = template.parsed if template is not None else spec_of(row["spec"])
        return cls(book, row, spec, active, last, int(row["buffered"]))

    @property
    def id(self) -> str:
        return str(self.row["id"])

    def fire(self, fire_at: float, kind: str, policy: str) -> str | None:
        """Record the fire at ``fire_at`` as ``policy`` decides (what it decided: see
        :func:`decide`); None when it already had its row (fired before, by anyone)."""
        run_id = fire_run_id(self.id, fire_at)
        what = decide(policy, self.active, self.buffered)
        state = {"start": "pending", "cancel": "pending", "buffer": "buffered"}.get(what, "skipped")
        if not self.book.record(self.id, fire_at, kind, state, run_id if what != "skip" else None):
            return None
        self.created += 1
        if what == "skip":
            self.skipped += 1
        elif what == "buffer":
            self.buffered += 1
        else:
            if what == "cancel" and self.starts and self.starts[-1].run_id == self.last_run:
                # (the previous run is this pass's: it is not started at all)
                dropped = self.starts.pop()
                self.book.restate(self.id, dropped.fire_at, "skipped", None)
                self.fired -= 1
                self.skipped += 1
                cancel = None
            else:
                cancel = self.last_run if what == "cancel" else None
                store, tx = self.book.store, self.book.tx
                if cancel is not None and store.skip_pending_fire_txn(
                    tx, self.id, fire_time(cancel), cancel, PENDING_STALE_S
                ):
                    # (its run was never written, its scheduler stopped first: it is
                    # skipped, so that no sweep starts it after this one)
                    self.fired -= 1
                    self.skipped += 1
                    cancel = None
            self.starts.append(FireStart(self.id, fire_at, run_id, self.spec, cancel))
            self.fired += 1
            self.active, self.last_run = True, run_id
        return what

    def drain_buffer(self) -> None:
        """Start the oldest buffered fire once the previous run has ended."""
        if self.active or self.buffered <= 0:
            return
        row = self.book.store.first_buffered_fire(self.book.tx, self.id)
        if row is None:
            self.buffered = 0
            return
        self.buffered -= 1
        self.book.restate(self.id, row["fire_at"], "pending", row["run_id"])
        self.starts.append(FireStart(self.id, row["fire_at"], row["run_id"], self.spec))
        self.fired += 1  # a buffered fire counts as fired once its run starts
        self.active, self.last_run = True, row["run_id"]

    def save(
        self,
        now: float,
        *,
        next_fire_at: float | None,
        remaining: int | None,
        paused: bool = False,
        note: str | None = None,
    ) -> None:
        """Book the schedule's new state and its fires' starts (written by
        :meth:`FireBook.flush`)."""
        due = None
        if next_fire_at is not None:
            due = next_fire_at + jitter_offset(self.id, next_fire_at, self.spec.jitter)
        if self.buffered > 0:
            due = min(due if due is not None else math.inf, now + BUFFER_RECHECK_S)
        self.book.advances.append(
            {
                "id": self.id,
                "next_fire_at": next_fire_at,
                "due_at": due,
                "last_run_id": self.last_run,
                "remaining_actions": remaining,
                "fired": self.fired,
                "skipped": self.skipped,
                "failed": 0,
                "buffered": self.buffered,
                "paused": paused,
                "note": note,
            }
        )
        self.book.starts.extend(self.starts)


@dataclass(slots=True)
class Pass:
    """What one firing transaction did."""

    #: Fires recorded ``pending``, whose runs are to be started after the commit.
    later: list[FireStart]
    #: Schedules claimed.
    claimed: int
    #: Runs created in the transaction.
    started: int


def fire_due_txn(
    tx: Tx,
    store: Store,
    limit: int,
    now: float | None = None,
    templates: Mapping[str, Template] | None = None,
) -> Pass:
    """Claim up to ``limit`` due schedules and record their fires, in one transaction:
    the fire rows, the schedules' new state and the runs of the fires whose schedule has
    a run prepared in ``templates`` (for its spec as claimed) are each written as one
    batch. ``now``: the database's clock unless given (tests inject it)."""
    now = store.now(tx) if now is None else now
    rows = store.claim_due_schedules_txn(tx, now, limit)
    bounds = [(str(r["id"]), float(r["next_fire_at"])) for r in rows if r["next_fire_at"]]
    book = FireBook(store, tx, existing=store.existing_fires(tx, bounds, now))
    if templates:
        book.runs = {
            sid: t
            for r in rows
            if (t := templates.get(sid := str(r["id"]))) is not None and t.spec == r["spec"]
        }
    for row in rows:
        _fire_schedule(book, row, now)
    later = book.flush()
    return Pass(later, len(rows), book.started)


def _fire_schedule(book: FireBook, row: Row, now: float) -> None:
    f = Firing.of(book, row, row["last_status"])
    spec = f.spec
    remaining: int | None = row["remaining_actions"]
    nxt: float | None = row["next_fire_at"]
    last_status = row["last_status"]
    if spec.pause_on_failure and last_status is not None and RunStatus(last_status) in FAILED:
        note = f"paused on failure: run {f.last_run} ended {last_status}"
        f.last_run = None
        f.save(now, next_fire_at=nxt, remaining=remaining, paused=True, note=note)
        return
    f.drain_buffer()
    cron = cron_of(spec.cron, spec.timezone) if spec.cron else None
    missed = 0
    while (
        nxt is not None
        and (remaining is None or remaining > 0)
        and nxt + jitter_offset(f.id, nxt, spec.jitter) <= now
    ):
        if nxt < now - spec.catchup_window:  # older than the catch-up window: missed
            missed += 1
            if book.record(f.id, nxt, "cron", "missed", None):
                f.skipped += 1
            if missed >= MISSED_RECORDED_MAX and cron is not None:
                f.skipped += 1  # (the rest, counted as one)
                nxt = cron.next_after(now - spec.catchup_window)
                continue
        elif f.fire(nxt, "cron", spec.overlap) not in (None, "skip") and remaining is not None:
            remaining -= 1  # (an action: a run started, or a fire buffered)
        nxt = cron.next_after(nxt) if cron is not None else None
    if remaining is not None and remaining <= 0:
        nxt = None
    f.save(now, next_fire_at=nxt, remaining=remaining, paused=False, note=row["note"])


@functools.lru_cache(maxsize=1024)
def spec_of(text: str) -> ScheduleSpec:
    """The spec stored as ``text`` (parsed once per process: a spec is immutable)."""
    return ScheduleSpec.from_dict(jsonutil.loads(text))


@dataclass(frozen=True, slots=True)
class Template:
    """The run a schedule's fires start, checked once (``new_run``) for the spec stored
    as ``spec`` while its workflow's definition was ``stamp``; each fire's run is a copy
    under the fire's run id."""

    spec: str
    parsed: ScheduleSpec
    stamp: object
    run: NewRun


class Templates:
    """The runs prepared for schedules, kept for the next fires (at most
    :data:`TEMPLATES_MAX`, the least recently used dropped). A template is made again
    when the schedule's spec changes or its workflow's definition does (this process's
    code, or what workers published, as :meth:`~runyard.service.starting.StartMixin.new_run`
    reads it); schedules of a task are not prepared (the task is read at each fire)."""

    def __init__(self, service: SchedulesMixin, size: int = TEMPLATES_MAX) -> None:
        self.service = service
        self.size = size
        self._cache: OrderedDict[str, Template] = OrderedDict()

    async def _stamp(self, workflow: str) -> object:
        local = self.service.core.local_workflow(workflow, None)
        if local is not None:
            return local
        return await self.service.published(workflow, None)

    def snapshot(self) -> dict[str, Template]:
        """Every template kept (a copy: a firing transaction reads it in the database's
        thread)."""
        return dict(self._cache)

    async def prepare(self, rows: list[Row]) -> dict[str, Template]:
        """A template for each of ``rows`` (``id, workflow, task_id, spec``) that can
        have one; a spec the start path refuses has none (its fire fails to start, and
        says why, as it would without templates)."""
        out: dict[str, Template] = {}
        cache = self._cache
        stamps: dict[str, object] = {}
        for row in rows:
            sid, text, workflow = str(row["id"]), str(row["spec"]), row["workflow"]
            if row["task_id"] is not None or workflow is None:
                continue
            stamp = stamps.get(workflow, stamps)
            if stamp is stamps:
                stamp = stamps[workflow] = await self._stamp(str(workflow))
            t = cache.get(sid)
            if t is None or t.spec != text or t.stamp != stamp:
                try:
                    parsed = ScheduleSpec.from_dict(jsonutil.loads(text))
                    req = await self.service.fire_request(parsed, sid, fire_run_id(sid, 0.0))
                    t = Template(text, parsed, stamp, await self.service.new_run(req))
                except RunyardError:
                    cache.pop(sid, None)
                    continue
                cache[sid] = t
                if len(cache) > self.size:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(sid)
            out[sid] = t
        return out


class Scheduler:
    """The scheduler loop of one process (see the module's docstring)."""

    def __init__(self, service: SchedulesMixin, *, batch: int = BATCH) -> None:
        self.service = service
        self.batch = batch
        self._last_sweep = 0.0
        self.templates = Templates(service)
        #: Until when (monotonic clock) every schedule due has its run prepared.
        self._ready_until = 0.0
        #: When this scheduler next purges old fire records (monotonic clock): within
        #: :data:`PURGE_FIRES_S` of its start, then about every that long.
        self.next_purge = time.monotonic() + random.uniform(0, PURGE_FIRES_S)
        #: Fires started by this scheduler (a figure for tests and the bench).
        self.started = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Fire schedules until ``stop`` is set (or the task is canceled).

        It sleeps until the next due time (read with the database's clock), and wakes
        earlier when any process changes schedules (announced to every process, see
        :data:`~runyard.store.schedules.SCHEDULES_CHANGED`): a wake-up costs one indexed
        read, at most every :data:`MIN_PASS_S`. New runs do not wake it. Else it looks
        again after :data:`BACKSTOP_S` (a lost announcement costs that much, at most)."""
        core = self.service.core
        await core.ensure_ready()
        hub = core.hub(runs=False)
        changed = asyncio.Event()

        def heard(run_id: str | None) -> None:
            if run_id is None or run_id == SCHEDULES_CHANGED:
                changed.set()

        hub.add_run_listener(heard)
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                began = time.monotonic()
                changed.clear()
                timeout = BACKSTOP_S
                try:
                    due = await self.tick()
                    if due is not None:
                        timeout = min(BACKSTOP_S, max(0.0, due))
                except StoreUnavailable as exc:
                    log.warning("scheduler: the database is unavailable (%s); retrying", exc)
                    timeout = 1.0
                except Exception:
                    log.exception("scheduler: a pass failed; retrying")
                    timeout = 1.0
                if timeout > 0:
                    await _wait_either(changed, stop, timeout)
                rest = MIN_PASS_S - (time.monotonic() - began)
                if rest > 0 and not stop.is_set():
                    await asyncio.sleep(rest)  # (a burst of wake-ups: one pass)
        finally:
            hub.remove_run_listener(heard)

    async def tick(self) -> float | None:
        """One pass: fire everything due, start stale pending fires now and then; in how
        many seconds a schedule is next due (None: none is).

        The schedules about to be claimed are read first (no lock) and their runs
        prepared (:class:`Templates`: checked once, then copied per fire), so that one
        transaction per batch claims them, records their fires and creates the runs."""
        core = self.service.core
        store = core.store

        def next_due(tx: Tx) -> float | None:
            due = store.next_schedule_due(tx)
            return None if due is None else due - store.now(tx)

        wait = await core.read(next_due, inline=True)
        if wait is not None and wait <= 0:
            while True:
                if time.monotonic() > self._ready_until:
                    due = await core.read(store.peek_due_schedules, self.batch, 0.0, inline=True)
                    templates = await self.templates.prepare(due)
                else:  # (prepared while waiting for them)
                    templates = self.templates.snapshot()
                done = await core.write(
                    fire_due_txn, store, self.batch, None, templates, inline=False
                )
                self.started += done.started
                await self.start(done.later)
                if done.claimed < self.batch:
                    break
                self._ready_until = 0.0  # (more than a batch due: the next is looked at)
            wait = await core.read(next_due, inline=True)
        read_at = time.monotonic()
        if wait is not None and 0 < wait <= PREPARE_AHEAD_S:
            # (idle until then: the runs of the next fires are prepared now, not on time)
            soon = await core.read(store.peek_due_schedules, self.batch, wait + 0.1, inline=True)
            await self.templates.prepare(soon)
            # (all that is due by then is prepared, unless a batch's worth or more is)
            self._ready_until = read_at + wait + 0.1 if len(soon) < self.batch else 0.0
        if time.monotonic() - self._last_sweep >= SWEEP_S:
            self._last_sweep = time.monotonic()
            await self.sweep()
        if time.monotonic() >= self.next_purge:
            self.next_purge = time.monotonic() + PURGE_FIRES_S * random.uniform(0.5, 1.5)
            await self.service.purge_schedule_fires(max_batches=PURGE_FIRES_BATCHES)
        # (counted from when it was read: preparing, sweeping and purging took some of it)
        return None if wait is None else wait - (time.monotonic() - read_at)

    async def sweep(self) -> None:
        """Start the pending fires a stopped scheduler left behind."""
        core = self.service.core
        store = core.store

        def stale(tx: Tx) -> list[Row]:
            return store.stale_pending_fires(tx, store.now(tx) - PENDING_STALE_S, self.batch)

        rows = await core.read(stale)
        await self.start(
            [
                FireStart(
                    r["schedule_id"],
                    r["fire_at"],
                    r["run_id"],
                    ScheduleSpec.from_dict(jsonutil.loads(r["spec"])),
                )
                for r in rows
            ]
        )

    async def start(self, starts: list[FireStart]) -> None:
        """Start the runs of ``starts`` (each under its fire's run id)."""
        if not starts:
            return
        results = await asyncio.gather(*(self._start_one(s) for s in starts))
        done = [(s.schedule_id, s.fire_at) for s, ok in zip(starts, results, strict=True) if ok]
        if done:
            await self.service.core.write(self.service.core.store.fires_started_txn, done)
        self.started += len(done)

    async def _start_one(self, s: FireStart) -> bool:
        service = self.service
        try:
            if s.cancel is not None:
                await service.cancel(ids=[s.cancel])
            req = await service.fire_request(s.spec, s.schedule_id, s.run_id)
            await service.start_run(req)
            return True
        except RunIdConflict:
            return True  # (its run exists: started by an earlier attempt)
        except StoreUnavailable:
            return False  # (stays pending: started by a later sweep)
        except RunyardError as exc:
            error = jsonutil.dumps(exc.to_dict())
            log.warning(
                "schedule %s: the run of fire %s failed to start: %s", s.schedule_id, s.fire_at, exc
            )
            await service.core.write(
                service.core.store.fire_start_failed_txn, s.schedule_id, s.fire_at, s.run_id, error
            )
            return False


async def _wait_either(changed: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    """Until ``changed`` or ``stop`` is set, or ``timeout`` seconds."""
    waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waits:
            if not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
