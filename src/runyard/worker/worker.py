"""The worker: claims due items, executes them, keeps their leases, recovers others'.

Loops, all in one asyncio loop:

* **claim**: take up to the free slots of due items in one transaction, start each;
  when nothing is due, wait for a wake-up (LISTEN/NOTIFY, an in-process signal, SQLite's
  wake sockets) or the polling backstop.
* **heartbeat**: every third of the lease, extend the leases this worker holds (on the
  database clock); an item missing from the answer was taken over, so its execution
  stops.
* **control**: look up the runs being executed that a client paused or canceled.
* **recovery**: every worker (no leader) re-queues items whose lease expired and marks
  runs CRASHED past ``max_recovery_attempts``.
* **deaths**: every ``DEATH_CHECK_S`` or so, each worker looks for workers certainly
  dead (on this host: their process is gone; on PostgreSQL: their session lock is free)
  and re-queues their items at once, without waiting for their leases.
* **liveness** (PostgreSQL): holds this worker's session lock; when its connection is
  lost, claims nothing until it took the lock back, and stops its executions if another
  worker recovered them meanwhile, or once cut off for a third of the lease.
* **purge**: every ``purge_interval_s`` or so (jittered; no leader either: deletes are
  idempotent), runs that ended more than ``RUNYARD_RETENTION_DAYS`` ago are deleted.

SIGTERM stops claiming, lets executions finish for ``shutdown_timeout_s``, then hands the
rest back at once so another worker resumes them from their last checkpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ..engine.executor import Execution, Runtime
from ..engine.http_target import http_workflow
from ..http_target import HTTP_TARGETS_ENV, HTTP_WORKFLOW
from ..models import EXECUTING, RunStatus
from ..outbound import Connections
from ..service.run_spans import record_run_ends
from ..service.scheduler import Scheduler
from ..store import Claimed, Fence
from ..store.claims import Recovered, SessionLock
from ..store.dbexec import LAST, LockBusy
from ..store.hub import Hub, wait_event
from . import liveness
from .deliveries import DeliveryLoop

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("runyard.worker")

#: How often a worker also promotes due SCHEDULED runs and scans flow-controlled items.
SCAN_INTERVAL_S = 0.1
#: A worker's claim upkeep (``Store.claim_upkeep``) after this many items it claimed,
#: looked at this often.
UPKEEP_EVERY_CLAIMS = 5000
UPKEEP_CHECK_S = 1.0
#: A worker's first purge comes within this long of its start (then every interval), so
#: workers restarted more often than the interval still purge.
FIRST_PURGE_WITHIN_S = 60.0
#: How often a worker looks for workers certainly dead (jittered), seconds.
DEATH_CHECK_S = 0.25
#: A loop whose database work keeps failing tries again after a wait that doubles up to
#: this long, seconds.
MAX_RETRY_WAIT_S = 5.0
#: While it keeps failing, it says so again this often, seconds.
STILL_FAILING_EVERY_S = 60.0


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random suffix (RELIABILITY.md rule 2)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Failures:
    """The failures in a row of one loop's database work. The first is logged as a
    warning (what failed, and why), then again only if the error changes or a minute
    passed, and the first success after them too: a worker cut off from its database
    says so, without a line per try."""

    def __init__(self, what: str, first_wait_s: float, max_wait_s: float = MAX_RETRY_WAIT_S):
        self.what = what
        self.first_wait_s = first_wait_s
        self.max_wait_s = max(first_wait_s, max_wait_s)
        self.count = 0
        self.since = 0.0
        self._logged: tuple[float, type[BaseException]] = (0.0, BaseException)  # when, what

    def failed(self, exc: BaseException) -> float:
        """Note a failure; how long to wait before the next try."""
        now = time.monotonic()
        self.count += 1
        error = f"{type(exc).__name__}: {exc}"
        if self.count == 1:
            self.since = now
            log.warning("%s failed (%s); retrying", self.what, error)
            self._logged = (now, type(exc))
        elif type(exc) is not self._logged[1] or now - self._logged[0] >= STILL_FAILING_EVERY_S:
            log.warning(
                "%s still failing after %d tries in %.0f s (%s)",
                self.what,
                self.count,
                now - self.since,
                error,
            )
            self._logged = (now, type(exc))
        else:
            log.debug("%s failed again (%s)", self.what, error)
        return min(self.max_wait_s, self.first_wait_s * 2.0 ** min(self.count - 1, 16))

    def succeeded(self) -> None:
        if self.count:
            # At the failure's level: whoever saw it should see it end.
            log.warning(
                "%s works again, after %d failed tries in %.1f s",
                self.what,
                self.count,
                time.monotonic() - self.since,
            )
            self.count = 0


class Worker:
    def __init__(
        self,
        service: Service,
        *,
        concurrency: int = 16,
        lease_s: float | None = None,
        shutdown_timeout_s: float = 30.0,
        poll_s: float | None = None,
        recovery_interval_s: float = 1.0,
        purge_interval_s: float = 3600.0,
        worker_id: str | None = None,
        schedules: bool = True,
        http_targets: bool | None = None,
    ) -> None:
        """``schedules``: run the scheduler loop too (every worker does by default: no
        leader; see :mod:`runyard.service.scheduler`). ``http_targets``: serve the
        built-in workflow ``http`` (HTTP-target runs) too; by default unless
        ``RUNYARD_HTTP_TARGETS=0``. A workflow of the app named ``http`` is served instead."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.service = service
        self.core = service.core
        if http_targets is None:
            http_targets = os.environ.get(HTTP_TARGETS_ENV, "1").strip() not in ("0", "false")
        # HTTP targets' connections, kept alive between runs (closed when the worker stops)
        self.outbound = Connections()
        if http_targets and HTTP_WORKFLOW not in self.core.workflows:
            self.core.workflows[HTTP_WORKFLOW] = http_workflow(
                self.core.outbound_policy(), self.outbound
            )
        self.concurrency = concurrency
        self.lease_s = lease_s or service.settings.lease_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.poll_s = poll_s if poll_s is not None else service.settings.poll_s
        self.recovery_interval_s = recovery_interval_s
        self._claimed_since_upkeep = 0
        self.purge_interval_s = purge_interval_s
        self.id = worker_id or new_worker_id()
        self.inflight: dict[tuple[str, int], tuple[Execution, asyncio.Task[None]]] = {}
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._control_now = asyncio.Event()
        self._live = asyncio.Event()  # holds its session lock (claims only then)
        self._live.set()
        self._lock: SessionLock | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(4, concurrency * 2), thread_name_prefix="runyard-step"
        )
        self.executed = 0
        self.scheduler = Scheduler(service) if schedules else None

    @property
    def wrefs(self) -> list[str]:
        return sorted(wf.ref for wf in self.core.workflows.values())

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        self._stopping.set()

    async def run(self, *, install_signals: bool = False) -> None:
        """Work until :meth:`stop` (or SIGTERM/SIGINT when ``install_signals``)."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        core = self.core
        await core.ensure_ready()
        hub = core.hub(work=True, runs=False)
        store, db = core.store, core.db
        await db.write(
            store.register_workflows_txn, [wf.to_record() for wf in core.workflows.values()]
        )
        await db.write(
            store.register_worker_txn,
            self.id,
            socket.gethostname(),
            os.getpid(),
            self.concurrency,
            self.wrefs,
        )
        host = liveness.host_id()
        started = liveness.process_started(os.getpid()) if host is not None else None
        self._lock = store.session_lock()
        key = await asyncio.to_thread(self._lock.acquire) if self._lock is not None else None
        if self._lock is not None and key is None:
            raise RuntimeError("no free key for the worker's session lock")
        await db.write(store.worker_liveness_txn, self.id, host if started else None, started, key)
        self.runtime = Runtime(
            store=store,
            db=db,
            owner=self.id,
            loop=loop,
            pool=self._pool,
            lease_s=self.lease_s,
            event_lookback_s=core.settings.event_lookback_s,
        )
        hub.add_run_listener(self._on_run_change)
        log.info("worker %s serving %s with concurrency %d", self.id, self.wrefs, self.concurrency)
        loops = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._control_loop(), name="control"),
            asyncio.create_task(self._recovery_loop(), name="recovery"),
            asyncio.create_task(self._purge_loop(), name="purge"),
            asyncio.create_task(self._upkeep_loop(), name="upkeep"),
            asyncio.create_task(self._death_loop(host if started else None), name="deaths"),
        ]
        if self.scheduler is not None:
            loops.append(asyncio.create_task(self.scheduler.run(self._stopping), name="scheduler"))
        loops.append(
            asyncio.create_task(
                DeliveryLoop(self.service, self.id, self._stopping).run(), name="deliveries"
            )
        )
        if self._lock is not None:
            loops.append(
                asyncio.create_task(
                    self._liveness_loop(self._lock, host if started else None, started),
                    name="liveness",
                )
            )
        try:
            await self._claim_loop(hub)
            await self._drain()
        finally:
            hub.remove_run_listener(self._on_run_change)
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            try:
                await db.write(store.worker_stopped_txn, self.id)
            except Exception:
                log.warning("could not mark worker %s stopped", self.id)
            if self._lock is not None:
                self._lock.close()  # (once marked stopped: nobody recovers its items)
            self._pool.shutdown(wait=False, cancel_futures=True)
            await self.outbound.aclose()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    # -- claiming ----------------------------------------------------------------------

    async def _claim_loop(self, hub: Hub) -> None:
        store, db = self.core.store, self.core.db
        wrefs = self.wrefs
        check_first = False
        scanned_at = 0.0
        flow_keys: list[str] = []  # found with due items by the last scan: claim from them
        due_armed = 0.0  # when the hub was last asked to wake for a due item (epoch s)
        busy = 0
        failures = _Failures("claiming work", first_wait_s=0.1)
        while not self._stopping.is_set():
            if not self._live.is_set():
                await self._wait_any(self._live.wait(), timeout=self.poll_s)
                continue
            free = self.concurrency - len(self.inflight)
            if free <= 0:
                self._slot_freed.clear()
                await self._wait_any(self._slot_freed.wait(), timeout=self.poll_s)
                continue
            due = False
            if check_first:
                try:
                    due = await db.read(store.has_due_work, wrefs, inline=True)
                except Exception as exc:
                    check_first = False  # (the next try claims: its success ends the spell)
                    await self._wait_any(self._stopping.wait(), timeout=failures.failed(exc))
                    continue
                if not due:
                    woken = await self._idle(hub, self.poll_s)
                    check_first = not (woken and store.precise_wakeups)
                    continue
            now = time.monotonic()
            # Claiming from keys, scan again: they may have more items due. Work announced
            # for a time that has come (a sleep's end) is readied by a scan too.
            came_due = hub.take_came_due()
            scan = came_due or bool(flow_keys) or now - scanned_at >= SCAN_INTERVAL_S
            if scan:
                scanned_at = now
            try:
                claimed = await db.write(
                    store.claim_txn,
                    self.id,
                    wrefs,
                    free,
                    self.lease_s,
                    scan,
                    flow_keys,
                    order=LAST,
                    durable=False,
                    busy_fails=busy < 3,
                )
            except LockBusy:
                # Another process holds the write lock: most often another worker woken
                # by the same commit, taking the same items. Look again (a read, no lock)
                # once it had time to commit, instead of queueing behind it for what is
                # likely gone and holding up its next write; the fourth time, queue.
                busy += 1
                check_first = True
                await self._wait_any(self._stopping.wait(), timeout=0.0005 * busy)
                continue
            except Exception as exc:
                await self._wait_any(self._stopping.wait(), timeout=failures.failed(exc))
                continue
            failures.succeeded()
            busy = 0
            if claimed.due_in is not None and claimed.due_in < self.poll_s:
                # Wake when the next parked item is due by the database's clock, whatever
                # was announced: an announced time is read from the announcer's clock
                # before the database's (a delayed run's, a few ms early; more from
                # another host), and the claim it woke found nothing due, which left the
                # item to the polling backstop. (Due but not readied: again shortly.)
                wall = time.time()
                at = wall + (claimed.due_in if claimed.due_in > 0 else SCAN_INTERVAL_S)
                if due_armed <= wall or at < due_armed:
                    due_armed = at
                    hub.notify_wake(at)
            tried, flow_keys = flow_keys, claimed.flow_keys
            if tried and not any(c.flow_key for c in claimed):
                flow_keys = []  # held back by their limits: the next scan finds them again
            self._claimed_since_upkeep += len(claimed)
            for c in claimed:
                self._start(c)
            if flow_keys and len(claimed) < free:
                continue  # claim from the keys found at once
            if len(claimed) < free:
                # Nothing more is due, or flow control holds it back (then look again soon).
                held_back = (due and not claimed) or bool(tried and not flow_keys)
                woken = await self._idle(hub, SCAN_INTERVAL_S if held_back else self.poll_s)
                # A wake-up that only says "something was committed" (SQLite's polling
                # fallback) is checked before taking the write lock; one that says "new
                # work" is claimed straight away.
                check_first = not (woken and store.precise_wakeups)
            else:
                check_first = False

    async def _idle(self, hub: Hub, timeout: float) -> bool:
        """Wait for a wake-up or ``timeout`` (the polling backstop); True when woken."""
        waiter = asyncio.ensure_future(hub.wait_wake(timeout))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not waiter.done():
            waiter.cancel()
            return False
        return bool(waiter.result())

    async def _wait_any(self, aw: Awaitable[object], timeout: float) -> None:
        waiter = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({waiter, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stop.cancel()

    def _start(self, c: Claimed) -> None:
        wf = self.core.workflow_for(c.workflow, c.workflow_version)
        execution = Execution(self.runtime, c, wf)
        key = (c.fence.run_id, c.fence.idx)
        task = asyncio.create_task(self._execute(key, execution), name=f"run {key}")
        self.inflight[key] = (execution, task)

    async def _execute(self, key: tuple[str, int], execution: Execution) -> None:
        try:
            await execution.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            # An outcome could not be written (the database stayed away past the retry
            # window): the lease will expire and another worker resumes the item.
            log.exception("execution of %s stopped without an outcome", key)
        finally:
            if self.inflight.get(key, (None,))[0] is execution:
                del self.inflight[key]
            self.executed += 1
            self._slot_freed.set()

    # -- leases and control ---------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        store, db = self.core.store, self.core.db
        interval = self.lease_s / 3
        # (Tried again at the same pace, never slower: the leases depend on it.)
        failures = _Failures("heartbeat (extending leases)", interval, max_wait_s=interval)
        while True:
            await asyncio.sleep(interval)
            snapshot = {k: v for k, v in self.inflight.items()}
            try:
                owned, stops = await db.write(
                    store.heartbeat_txn,
                    self.id,
                    self.lease_s,
                    [x.fence for x, _ in snapshot.values()],
                    durable=False,
                )
            except Exception as exc:
                failures.failed(exc)
                continue
            failures.succeeded()
            for key, (execution, task) in snapshot.items():
                f: Fence = execution.fence
                if (f.run_id, f.idx, f.epoch) not in owned and not task.done():
                    log.warning("lost the lease of %s; stopping its execution", key)
                    self._stop_execution(execution, task, "lost")
            self._apply_stops(stops)

    def _on_run_change(self, run_id: str | None) -> None:
        # Not for an execution writing its outcome: the change is most often that very
        # outcome (announced by this worker, or heard back from the database), and a
        # check would read the runs of every execution in flight for nothing.
        if run_id is None or any(
            k[0] == run_id and not x.finishing for k, (x, _) in self.inflight.items()
        ):
            self._control_now.set()

    async def _control_loop(self) -> None:
        store, db = self.core.store, self.core.db
        failures = _Failures("checking for paused and canceled runs", first_wait_s=0.1)
        while True:
            self._control_now.clear()
            await wait_event(self._control_now, 0.5)
            if not self.inflight:
                continue
            run_ids = sorted(
                {
                    k[0]
                    for k, (x, _) in self.inflight.items()
                    if x.claimed.kind != "hook" and not x.finishing
                }
            )
            if not run_ids:
                continue
            try:
                statuses = await db.read(store.run_statuses, run_ids, inline=True)
            except Exception as exc:
                await asyncio.sleep(failures.failed(exc))
                continue
            failures.succeeded()
            self._apply_stops({k: v for k, v in statuses.items() if v not in EXECUTING})
            await asyncio.sleep(0.02)  # at most ~50 checks a second however busy the hub is

    def _apply_stops(self, stops: dict[str, str]) -> None:
        if not stops:
            return
        for _key, (execution, task) in list(self.inflight.items()):
            if execution.claimed.kind == "hook":
                continue
            status = stops.get(execution.fence.run_id)
            if status == RunStatus.PAUSED:
                execution.request_stop("paused")
            elif status is not None:
                self._stop_execution(
                    execution, task, "canceled" if status == RunStatus.CANCELED else "lost"
                )

    def _stop_execution(self, execution: Execution, task: asyncio.Task[None], reason: str) -> None:
        execution.request_stop(reason)
        task.cancel()

    async def _recovery_loop(self) -> None:
        store, db = self.core.store, self.core.db
        failures = _Failures("recovering expired leases", first_wait_s=self.recovery_interval_s)
        wait = 0.0
        while True:
            await asyncio.sleep(max(wait, self.recovery_interval_s * random.uniform(0.5, 1.5)))
            try:
                recovered = await db.write(store.recover_txn, inline=False)  # (any size)
            except Exception as exc:
                wait = failures.failed(exc)
                continue
            failures.succeeded()
            wait = 0.0
            if recovered:
                log.info("recovered %d run(s) whose worker stopped heartbeating", len(recovered))
                await record_run_ends(self.core, recovered.crashed, RunStatus.CRASHED)

    async def _death_loop(self, host: str | None) -> None:
        """Re-queue at once the items of workers certainly dead: on this host, a worker
        whose process is gone; on PostgreSQL, one whose session lock is free (unless its
        process lives here: it will take its lock back)."""
        store, db = self.core.store, self.core.db
        failures = _Failures("looking for dead workers", first_wait_s=DEATH_CHECK_S)
        wait = 0.0
        while True:
            await asyncio.sleep(max(wait, DEATH_CHECK_S * random.uniform(0.6, 1.4)))
            if not self._live.is_set():
                continue  # (to the others, this worker may be the dead one)
            try:
                dead: list[str] = []
                alive: set[str] = set()
                if host is not None:
                    for wid, pid, started in await db.read(store.workers_on_host, host, self.id):
                        if started is not None and liveness.process_gone(pid, started):
                            dead.append(wid)
                        else:
                            alive.add(wid)
                unlocked = [
                    (wid, key)
                    for wid, key, _ in await db.read(store.unlocked_workers, self.id)
                    if wid not in alive and wid not in dead
                ]
                recovered = Recovered()
                if dead or unlocked:
                    recovered = await db.write(store.recover_dead_txn, dead, unlocked)
            except Exception as exc:
                wait = failures.failed(exc)
                continue
            failures.succeeded()
            wait = 0.0
            if recovered:
                log.warning(
                    "recovered %d run(s) of dead worker(s) %s",
                    len(recovered),
                    ", ".join(sorted(dead + [w for w, _ in unlocked])),
                )
                await record_run_ends(self.core, recovered.crashed, RunStatus.CRASHED)

    async def _liveness_loop(
        self, lock: SessionLock, host: str | None, started: float | None
    ) -> None:
        """Keep this worker's session lock; see the module's docstring."""
        store, db = self.core.store, self.core.db
        while True:
            if not await asyncio.to_thread(lock.lost, 1.0):
                continue
            self._live.clear()
            log.warning("worker %s lost its session lock; taking it back", self.id)
            failures = _Failures("taking the worker's session lock back", first_wait_s=0.05)
            lost_at = time.monotonic()
            while True:
                try:
                    key = await asyncio.to_thread(lock.acquire, lock.key)
                    if key is None:
                        # A worker is recovering this one's items, holding its lock.
                        self._stop_all("another worker recovered them")
                        key = await asyncio.to_thread(lock.acquire)
                        if key is None:
                            raise RuntimeError("no free key for the worker's session lock")
                    if not await db.write(store.worker_liveness_txn, self.id, host, started, key):
                        self._stop_all("another worker recovered them")
                except Exception as exc:
                    lock.close()
                    if time.monotonic() - lost_at >= self.lease_s / 3:
                        self._stop_all("cut off from the database")
                    await asyncio.sleep(failures.failed(exc))
                    continue
                failures.succeeded()
                self._live.set()
                break

    def _stop_all(self, why: str) -> None:
        if self.inflight:
            log.warning("stopping %d execution(s): %s", len(self.inflight), why)
        for execution, task in list(self.inflight.values()):
            if not task.done():
                self._stop_execution(execution, task, "lost")

    async def _upkeep_loop(self) -> None:
        """After every ``UPKEEP_EVERY_CLAIMS`` items this worker claimed, the store's
        claim upkeep (PostgreSQL without autovacuum: a vacuum of ``items``, whose claim
        index otherwise fills with the entries of claimed items that every claim walks)."""
        store, db = self.core.store, self.core.db
        while True:
            await asyncio.sleep(UPKEEP_CHECK_S)
            if self._claimed_since_upkeep < UPKEEP_EVERY_CLAIMS:
                continue
            self._claimed_since_upkeep = 0
            try:
                await db.read(store.claim_upkeep)
            except Exception as exc:
                log.warning("claim upkeep failed (%s)", exc)

    async def _purge_loop(self) -> None:
        delay = random.uniform(0, min(FIRST_PURGE_WITHIN_S, self.purge_interval_s))
        while True:
            await asyncio.sleep(delay)
            delay = self.purge_interval_s * random.uniform(0.5, 1.5)
            try:
                purged = await self.service.purge()
            except Exception as exc:
                log.warning("purge of old runs failed (%s)", exc)
                continue
            if purged:
                log.info(
                    "purged %d run(s) that ended more than %g day(s) ago",
                    purged,
                    self.core.settings.retention_days,
                )

    # -- shutdown --------------------------------------------------------------------------

    async def _drain(self) -> None:
        if not self.inflight:
            return
        log.info("finishing %d execution(s) before stopping", len(self.inflight))
        tasks = [t for _, t in self.inflight.values()]
        _, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout_s)
        if pending:
            log.info("handing back %d execution(s)", len(pending))
            for execution, task in list(self.inflight.values()):
                if not task.done():
                    self._stop_execution(execution, task, "shutdown")
            await asyncio.wait(pending, timeout=10)
