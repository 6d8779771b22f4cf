"""Executing one claimed item: replay its history, run what is new, write the outcome.

A step's checkpoint is written before the next step starts (so a step whose checkpoint
committed never runs again), but not before the deterministic code in between: it
rides with the next write, and the last one commits in the same transaction as the
outcome. Concurrent executions share commits through the database thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple, overload

from .. import jsonutil, telemetry
from ..errors import (
    InvalidInput,
    NonDeterminismError,
    NonRetryableError,
    RunTimeout,
    StepFailed,
    StepTimeout,
)
from ..models import EXECUTING, TERMINAL, ItemState, RunStatus
from ..rules import EVENT_ID_MAX, JSON_DEPTH_MAX
from ..store import Checkpoint, Claimed, Store
from ..store.dbexec import DbExecutor
from ..store.tx import Later, Tx
from .context import Context, EventResult, SyncContext
from .failures import attempts_text, error_record, retryable_body_failure, tally
from .registry import FlowControl, RetryPolicy, WorkflowDef
from .signals import Canceled, Fenced, Suspend, Suspended

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

log = logging.getLogger("runyard.executor")

#: Retry delays up to this long are slept in place; longer ones hand the item back.
INLINE_BACKOFF_S = 1.0


def _check_text(value: Any, api: str, argument: str) -> None:
    """Refuse, where the workflow calls ``api``, an ``argument`` the database cannot store
    (the store would fail deep inside a write, PostgreSQL on any NUL character)."""
    if not isinstance(value, str):
        problem = f"must be a string, not {type(value).__name__}"
    elif reason := jsonutil.unstorable(value):
        problem = f"{value[:80]!r} contains {reason}, which cannot be stored"
    else:
        return
    raise InvalidInput(
        f"{api}: {argument} {problem}", details=[{"field": argument, "error": problem}]
    )


@dataclass(slots=True)
class Runtime:
    """What executions share within a worker."""

    store: Store
    db: DbExecutor
    owner: str
    loop: asyncio.AbstractEventLoop
    pool: concurrent.futures.ThreadPoolExecutor
    lease_s: float
    event_lookback_s: float


class Execution:
    """One claimed item being executed."""

    def __init__(self, rt: Runtime, claimed: Claimed, workflow: WorkflowDef) -> None:
        self.rt = rt
        self.claimed = claimed
        self.fence = claimed.fence
        self.workflow = workflow
        self.history = claimed.history
        self.max_recorded = max(self.history, default=0)
        self.pending: list[Checkpoint] = []
        self.position = 0
        self.sync_state = claimed.sync_state
        self.cancel_requested = False
        self.pause_requested = False
        self.stop_reason: str | None = None  # canceled | paused | shutdown | lost
        # Writing its outcome or handing the item back: nothing left to stop (a run
        # canceled meanwhile keeps its status; the write is fenced like any other).
        self.finishing = False
        self.thread_futures: set[concurrent.futures.Future[Any]] = set()
        # Log lines on their way to the database (ctx.logger may be called from threads).
        self._log_lock = threading.Lock()
        self._log_writes: list[concurrent.futures.Future[bool]] = []
        #: The run's trace, when tracing is on here and the run was started with one.
        self.trace = telemetry.run_trace(claimed.options, claimed.fence.run_id, workflow.name)
        retries = claimed.options.get("retries")
        self.default_retries = (
            RetryPolicy(max_attempts=int(retries) + 1) if retries is not None else workflow.retries
        )

    # -- helpers -------------------------------------------------------------------------

    @property
    def replaying(self) -> bool:
        return self.position < self.max_recorded

    def _next(self, name: str, kind: str) -> tuple[int, Any]:
        if self.pause_requested:
            raise Suspend(time.time(), None)
        if self.cancel_requested:
            raise Canceled()
        self.position += 1
        pos = self.position
        rec = self.history.get(pos)
        if rec is not None and (rec.name != name or rec.kind != kind):
            raise NonDeterminismError(
                f"non-deterministic workflow {self.workflow.name!r}: on replay, position {pos} "
                f"is {kind} {name!r} but the recorded history has {rec.kind} {rec.name!r} "
                "there. Code between steps must make the same calls in the same order "
                "(branch on ctx.patched() to change a deployed workflow).",
                details={
                    "position": pos,
                    "expected": {"kind": rec.kind, "name": rec.name},
                    "found": {"kind": kind, "name": name},
                },
            )
        return pos, rec

    def _check(self, status: str | None) -> None:
        if status is None:
            raise Fenced()
        if self.claimed.kind == "hook":
            return
        if status == RunStatus.CANCELED:
            raise Canceled()
        if status == RunStatus.PAUSED:
            raise Suspend(time.time(), None)
        if status not in EXECUTING:
            raise Fenced()

    @overload
    async def _write(
        self, fn: Callable[[Tx, *Ts], Later[R]], /, *args: *Ts, inline: bool = True
    ) -> R: ...

    @overload
    async def _write(self, fn: Callable[[Tx, *Ts], R], /, *args: *Ts, inline: bool = True) -> R: ...

    async def _write(
        self, fn: Callable[[Tx, *Ts], object], /, *args: *Ts, inline: bool = True
    ) -> Any:
        return await self.rt.db.write(fn, *args, order=self.fence.run_id, inline=inline)

    async def flush(self) -> None:
        """Make pending checkpoints durable (before any new side effect)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        status = await self._write(
            self.rt.store.checkpoint_txn, self.fence, self.claimed.iteration, pending
        )
        self._check(status)

    def store_log(self, level: str, message: str) -> None:
        """Store a line of the run's log without waiting (fenced like a checkpoint: a
        worker that lost the item stores nothing); the outcome waits for it."""
        fut: concurrent.futures.Future[bool] = self.rt.db.submit(
            True,
            self.rt.store.log_txn,
            self.fence,
            self.claimed.iteration,
            self.claimed.attempt,
            level,
            message[:10000],  # (spelt out by RunLogger: see context.spelt_out)
            order=self.fence.run_id,
        )
        with self._log_lock:
            if len(self._log_writes) >= 64:
                self._log_writes = [f for f in self._log_writes if not f.done()]
            self._log_writes.append(fut)

    async def _logs_stored(self) -> None:
        """Wait until the lines logged so far are stored (or refused), so that whoever
        sees the outcome written next can read them all."""
        with self._log_lock:
            writes, self._log_writes = self._log_writes, []
        if writes:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in writes), return_exceptions=True)

    async def _call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        if inspect.iscoroutinefunction(fn):
            coro = fn(*args, **kwargs)
        else:
            coro = self.rt.loop.run_in_executor(
                self.rt.pool, functools.partial(fn, *args, **kwargs)
            )
        if timeout is None:
            return await coro
        try:
            async with asyncio.timeout(timeout):
                return await coro
        except TimeoutError:
            raise StepTimeout(f"attempt took longer than {timeout} s") from None

    async def _attempts(
        self,
        name: str,
        pos: int | None,
        policy: RetryPolicy,
        body: Callable[[], Any],
    ) -> tuple[str | None, dict[str, Any] | None, int, float]:
        """Run ``body`` with retries: ``(result JSON, error record, attempts, started)``.
        A step (at ``pos``) counts on from its failed attempts recorded before."""
        failed, limited = (0, 0) if pos is None else self._failed_before(pos)
        while True:
            attempt = failed + limited + 1
            started = time.time()
            try:
                if self.trace is None:
                    result = await body()
                else:
                    result = await self.trace.attempt(name, attempt, self.fence.idx, body)
                return (
                    jsonutil.dumps(
                        result, what=f"the result of step {name!r}", max_depth=JSON_DEPTH_MAX
                    ),
                    None,
                    attempt,
                    started,
                )
            except Exception as exc:
                record = error_record(exc)
                delay: float | None = None
                if not isinstance(exc, NonRetryableError | InvalidInput | NonDeterminismError):
                    failed, limited = tally(exc, failed, limited)
                    delay = policy.next_delay(exc, failed, limited)
                if pos is not None:
                    # Every failed attempt of a step is in its log, the last one too (a
                    # new attempt of the body drops the failed checkpoint, not this).
                    await self._record_attempt(pos, name, attempt, started, record)
                if delay is None:
                    return None, record, attempt, started
                if pos is not None and delay > INLINE_BACKOFF_S:
                    raise Suspend(time.time() + delay, f"retry:{name}") from None
                await asyncio.sleep(delay)

    def _failed_before(self, pos: int) -> tuple[int, int]:
        """The failed attempts recorded at ``pos`` before this execution: (not rate
        limited, rate limited)."""
        c = self.claimed
        return c.failed_attempts.get(pos, 0), c.limited_attempts.get(pos, 0)

    async def _record_attempt(
        self, pos: int, name: str, attempt: int, started: float, record: dict[str, Any]
    ) -> None:
        status = await self._write(
            self.rt.store.record_attempt_txn,
            self.fence,
            self.claimed.iteration,
            self.claimed.generation,
            pos,
            name,
            attempt,
            started,
            jsonutil.dumps(record),
        )
        self._check(status)

    # -- durable operations ----------------------------------------------------------------

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int | RetryPolicy | None,
        timeout: float | None,
        flow_control: FlowControl | None,
    ) -> Any:
        _check_text(name, "ctx.step", "name")
        pos, rec = self._next(name, "step")
        if rec is not None:
            if rec.status == "failed":
                raise StepFailed(
                    f"step {name!r} failed: {rec.error.get('message') if rec.error else ''}",
                    details=rec.error,
                )
            return rec.result
        await self.flush()
        policy = RetryPolicy.of(retries, self.default_retries)

        async def body() -> Any:
            if flow_control is None:
                return await self._call(fn, args, kwargs, timeout)
            holder = f"{self.fence.owner}:{self.fence.run_id}:{self.fence.idx}:{pos}"
            await self._acquire_slot(flow_control, holder)
            try:
                return await self._call(fn, args, kwargs, timeout)
            finally:
                await self._write(self.rt.store.release_flow_slot_txn, flow_control.key, holder)

        text, error, attempts, started = await self._attempts(name, pos, policy, body)
        # The step's attempts in all: those of the body's earlier attempts, then these.
        in_all = self.claimed.all_failed_attempts.get(pos, 0) - sum(self._failed_before(pos))
        in_all += attempts
        if error is not None:
            self.pending.append(
                Checkpoint(
                    pos,
                    name,
                    "step",
                    error=jsonutil.dumps(error),
                    attempts=in_all,
                    started_at=started,
                )
            )
            raise StepFailed(
                f"step {name!r} failed after "
                + attempts_text(
                    attempts,
                    in_all,
                    sum(self._failed_before(0)) + 1,
                    self.default_retries.max_attempts,
                )
                + f": {error['message']}",
                details=error,
            )
        self.pending.append(
            Checkpoint(pos, name, "step", result=text, attempts=in_all, started_at=started)
        )
        return json.loads(text) if text is not None else None

    async def _acquire_slot(self, fc: FlowControl, holder: str) -> None:
        await self._write(
            self.rt.store.upsert_flow_key_txn, fc.key, fc.parallelism, fc.rate, fc.period
        )
        while True:
            wait = await self._write(
                self.rt.store.acquire_flow_slot_txn,
                fc.key,
                holder,
                self.fence.owner,
                self.rt.lease_s,
            )
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, 0.25))

    async def sleep(
        self, name: str, *, seconds: float | None = None, until: float | None = None
    ) -> None:
        _check_text(name, "ctx.sleep", "name")
        pos, rec = self._next(name, "sleep")
        if rec is not None and rec.status == "completed":
            return
        if rec is not None:
            wake_at = float(rec.result["wake_at"])
        else:
            wake_at = until if until is not None else time.time() + max(0.0, seconds or 0.0)
        record = jsonutil.dumps({"wake_at": wake_at})
        if time.time() >= wake_at:
            self.pending.append(Checkpoint(pos, name, "sleep", result=record))
            return
        if rec is None:
            self.pending.append(Checkpoint(pos, name, "sleep", result=record, status="waiting"))
        raise Suspend(wake_at, f"sleep:{name}")

    async def wait_for_event(
        self, name: str, event_ids: list[str], timeout: float | None, lookback: float | None
    ) -> EventResult:
        if not event_ids:
            raise InvalidInput("wait_for_event needs an event_id or event_ids")
        _check_text(name, "ctx.wait_for_event", "name")
        for eid in event_ids:
            _check_text(eid, "ctx.wait_for_event", "event_id")
            if not eid or len(eid) > EVENT_ID_MAX:
                raise InvalidInput(f"event id {eid!r} must be 1-{EVENT_ID_MAX} characters")
        pos, rec = self._next(name, "wait")
        if rec is not None and rec.status == "completed":
            r = rec.result
            return EventResult(r["event_id"], r["data"], r["timed_out"])
        if rec is not None:
            since, deadline, ids = rec.result["since"], rec.result["deadline"], rec.result["ids"]
            # (a wait recorded before "began" was: its start is not known, its bound is)
            began = rec.result.get("began", since)
        else:
            began = time.time()
            look = self.rt.event_lookback_s if lookback is None else lookback
            since, deadline, ids = (
                began - look,
                (began + timeout if timeout is not None else None),
                event_ids,
            )
            self.pending.append(
                Checkpoint(
                    pos,
                    name,
                    "wait",
                    status="waiting",
                    result=jsonutil.dumps(
                        {"since": since, "began": began, "deadline": deadline, "ids": ids}
                    ),
                )
            )
        pending, self.pending = self.pending, []
        wait = await self._write(
            self.rt.store.begin_wait_txn,
            self.fence,
            self.claimed.iteration,
            pending,
            pos,
            name,
            ids,
            since,
            deadline,
            self.claimed.deadline_at,
            began,
        )
        if wait.kind == "fenced":
            raise Fenced()
        if wait.kind == "suspended":
            raise Suspended()
        if wait.kind == "run_timeout":
            raise RunTimeout(self.claimed.timeout_message())
        if wait.kind == "event" and wait.event is not None:
            result = EventResult(wait.event[0], wait.event[1], False)
        else:
            result = EventResult(None, None, True)
        self.pending.append(
            Checkpoint(
                pos,
                name,
                "wait",
                result=jsonutil.dumps(
                    {
                        "event_id": result.event_id,
                        "data": result.data,
                        "timed_out": result.timed_out,
                    }
                ),
            )
        )
        return result

    async def emit(self, data: Any, key: str | None) -> bool:
        """Store an output; False when the run's ``max_results`` refused it (counted in
        the store's transaction, across every item and worker of the run)."""
        if key is not None:
            _check_text(key, "ctx.emit", "key")
        pos, rec = self._next("emit", "emit")
        if rec is not None:
            return rec.result is not False
        cp = Checkpoint(
            pos,
            "emit",
            "emit",
            output=(key, jsonutil.dumps(data, what="emitted data", max_depth=JSON_DEPTH_MAX)),
        )
        if self.claimed.max_results is None:
            self.pending.append(cp)
            await self.flush()
            return True
        await self.flush()
        answer = await self._write(
            self.rt.store.emit_limited_txn, self.fence, self.claimed.iteration, cp
        )
        if answer is None:
            raise Fenced()
        status, stored = answer
        self._check(status)
        return stored

    async def charge(self, action: str, amount: float) -> None:
        if not isinstance(amount, int | float) or amount != amount:
            raise InvalidInput("charge amount must be a number")
        _check_text(action, "ctx.charge", "action")
        pos, rec = self._next(f"charge:{action}", "charge")
        if rec is None:
            self.pending.append(
                Checkpoint(pos, f"charge:{action}", "charge", credit=(action, float(amount)))
            )

    async def progress(self, fraction: float | None, message: str | None) -> None:
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise InvalidInput("progress must be between 0 and 1")
        if message is not None:
            _check_text(message, "ctx.progress", "message")
        if self.replaying:
            return
        await self.flush()
        ok = await self._write(self.rt.store.progress_txn, self.fence, fraction, message)
        if not ok:
            raise Fenced()

    async def save_sync(self, state: Any) -> None:
        pos, rec = self._next("sync.save", "sync")
        text = jsonutil.dumps(state, what="sync state", max_depth=JSON_DEPTH_MAX)
        self.sync_state = json.loads(text)
        if rec is None:
            self.pending.append(Checkpoint(pos, "sync.save", "sync", sync_state=text))

    def patched(self, change: str) -> bool:
        _check_text(change, "ctx.patched", "change")
        rec = self.history.get(self.position + 1)
        if rec is not None and not (rec.kind == "patch" and rec.name == change):
            return False  # recorded before the change: keep to the old path
        self.position += 1
        if rec is None:
            self.pending.append(Checkpoint(self.position, change, "patch"))
        return True

    async def map(
        self,
        name: str,
        fn: Callable[[Any], Any],
        elements: list[Any],
        concurrency: int,
        retries: int | RetryPolicy | None,
    ) -> list[Any]:
        if concurrency < 1:
            raise InvalidInput("map concurrency must be at least 1")
        _check_text(name, "ctx.map", "name")
        pos, rec = self._next(name, "map")
        if rec is not None and rec.status == "completed":
            return list(rec.result)
        if rec is not None and rec.status == "failed":
            raise StepFailed(f"map {name!r} failed", details=rec.error)
        if rec is not None:
            base, n = rec.result["base"], rec.result["n"]
        else:
            encoded = [
                jsonutil.dumps(e, what=f"{name}[{i}]", max_depth=JSON_DEPTH_MAX)
                for i, e in enumerate(elements)
            ]
            pending, self.pending = self.pending, []
            got = await self._write(
                self.rt.store.start_map_txn,
                self.fence,
                self.claimed.iteration,
                pending,
                pos,
                name,
                encoded,
                inline=len(encoded) <= 16,
            )
            if got is None:
                raise Fenced()
            base, n = got, len(encoded)
        items = await self.rt.db.read(
            functools.partial(self.rt.store.get_items, offset=0, limit=n + base, kinds=["map"]),
            self.fence.run_id,
        )
        mine = {it.idx: it for it in items if base <= it.idx < base + n}
        results: list[Any] = [None] * n
        errors: dict[int, Any] = {}
        todo: list[int] = []
        for i in range(n):
            it = mine.get(base + i)
            if it is not None and it.state == ItemState.COMPLETED:
                results[i] = it.result
            else:
                todo.append(i)
        policy = RetryPolicy.of(retries, self.default_retries)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                element = mine[base + i].input if (base + i) in mine else elements[i]
                await self._set_elements([(base + i, "processing", None, None)])
                text, error, _, _ = await self._attempts(
                    f"{name}[{i}]",
                    None,
                    policy,
                    lambda: self._call(fn, (element,), {}, None),
                )
                if error is None:
                    results[i] = json.loads(text) if text is not None else None
                    await self._set_elements([(base + i, "completed", text, None)])
                else:
                    errors[i] = error
                    await self._set_elements([(base + i, "failed", None, jsonutil.dumps(error))])

        await asyncio.gather(*(one(i) for i in todo))
        if errors:
            first = min(errors)
            record = {
                "code": "map_failed",
                "message": f"{len(errors)} of {n} elements failed",
                "errors": {str(k): v["message"] for k, v in errors.items()},
            }
            self.pending.append(Checkpoint(pos, name, "map", error=jsonutil.dumps(record)))
            raise StepFailed(
                f"map {name!r}: {len(errors)} of {n} element(s) failed; "
                f"element {first}: {errors[first]['message']}",
                details=record,
            )
        self.pending.append(Checkpoint(pos, name, "map", result=jsonutil.dumps(results)))
        return results

    async def _set_elements(self, updates: list[tuple[int, str, str | None, str | None]]) -> None:
        ok = await self._write(self.rt.store.set_elements_txn, self.fence, updates)
        if not ok:
            raise Fenced()

    # -- the item as a whole --------------------------------------------------------------

    async def run(self) -> None:
        """Execute the item to its outcome or its next suspension. Never raises except
        ``asyncio.CancelledError`` when the worker shuts down."""
        try:
            await self._run()
        except Fenced:
            return
        except Canceled:
            return  # (the cancel ended the run, and its span: runyard.service.run_spans)
        except Suspended:
            pass  # (the suspension's own write announced it)
        except asyncio.CancelledError:
            if self.stop_reason in ("shutdown", "paused"):
                await self._hand_back(time.time(), None)
            if self.stop_reason == "shutdown":
                raise
        except Suspend as s:
            await self._hand_back(s.due_at, s.waiting_for)

    async def _hand_back(self, due_at: float, waiting_for: str | None) -> None:
        self.finishing = True
        await self._logs_stored()
        deadline = self.claimed.deadline_at
        if deadline is not None:
            due_at = min(due_at, deadline)
        pending, self.pending = self.pending, []
        await self._write(
            self.rt.store.suspend_txn,
            self.fence,
            self.claimed.iteration,
            due_at,
            waiting_for,
            pending,
        )

    async def _finish(
        self, state: ItemState, result: str | None, error: dict[str, Any] | None
    ) -> None:
        self.finishing = True
        await self._logs_stored()
        pending, self.pending = self.pending, []
        sole = self.claimed.kind == "input" and self.claimed.run_items == 1
        # An outcome locks its run's row; the outcomes of a run of many items share it,
        # so theirs wait for it in the database thread (the event loop waits 2 ms at most
        # for a lock, then hands the job over: a failed statement and a second try).
        status = await self._write(
            self.rt.store.complete_item_txn,
            self.fence,
            self.claimed.iteration,
            pending,
            state,
            result,
            jsonutil.dumps(error) if error is not None else None,
            sole,
            inline=self.claimed.run_items == 1,
        )
        # The outcome that ended the run records the run's span (an on_failure hook runs
        # after its run has ended).
        if self.trace is not None and status in TERMINAL and self.claimed.kind != "hook":
            self.trace.end_run(str(status), error)

    async def _run(self) -> None:
        c = self.claimed
        if c.kind == "hook":
            await self._run_hook()
            return
        try:
            typed = self.workflow.validate_input(c.input)
        except InvalidInput as exc:
            await self._finish(ItemState.DISCARDED, None, error_record(exc))
            return
        deadline = c.deadline_at
        started = time.time()
        try:
            if deadline is not None and time.time() >= deadline:
                # Claimed at or past its deadline, as an item handed back (a sleep, an
                # event wait) until then is: it ends now, and waits for no event.
                if not await self._write(self.rt.store.forget_waits_txn, self.fence):
                    raise Fenced()
                raise RunTimeout(c.timeout_message())
            coro = self._invoke(typed)
            if deadline is not None:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.time())):
                        result = await coro
                except TimeoutError:
                    raise RunTimeout(c.timeout_message()) from None
            else:
                result = await coro
            text = jsonutil.dumps(result, what="the workflow's result", max_depth=JSON_DEPTH_MAX)
        except (Suspend, Suspended, Fenced, Canceled, asyncio.CancelledError):
            raise
        except Exception as exc:
            if self.cancel_requested:
                raise Canceled() from None
            error = error_record(exc)
            await self._retry_body(exc, error, started)
            await self._finish(ItemState.FAILED, None, error)
            return
        await self._finish(ItemState.COMPLETED, text, None)

    async def _retry_body(self, exc: Exception, error: dict[str, Any], started: float) -> None:
        """After the workflow's body raised ``exc``: if its retry policy leaves it another
        attempt, record this one (at position 0, so the count outlives this worker) and
        raise :class:`Suspend` to hand the item back until the backoff has passed (no
        worker is held meanwhile). The next attempt replays what completed; the operation
        that failed last, if any, is not recorded, so it runs again. Returns when the
        item is to fail."""
        if not retryable_body_failure(exc):
            return
        failed, limited = tally(exc, *self._failed_before(0))
        delay = self.default_retries.next_delay(exc, failed, limited)
        if delay is None:
            return
        self.pending = [
            cp for cp in self.pending if not (cp.position == self.position and cp.error)
        ]
        await self._record_attempt(0, self.workflow.name, failed + limited, started, error)
        raise Suspend(time.time() + delay, "retry:workflow") from None

    async def _invoke(self, typed: Any) -> Any:
        ctx = Context(self)
        fn = self.workflow.fn
        args = (typed,) if self.workflow.takes_input else ()
        if self.workflow.is_async:
            return await fn(ctx, *args)
        sctx = SyncContext(ctx, self.rt.loop)
        return await self.rt.loop.run_in_executor(self.rt.pool, functools.partial(fn, sctx, *args))

    async def _run_hook(self) -> None:
        handler = self.workflow.on_failure
        error: dict[str, Any] | None = None
        if handler is not None:
            info = FailureInfo(self.fence.run_id, self.workflow.name, self.claimed.input)
            try:
                if inspect.iscoroutinefunction(handler):
                    await handler(info)
                else:
                    await self.rt.loop.run_in_executor(self.rt.pool, handler, info)
            except Exception as exc:
                log.exception("on_failure handler of %s failed", self.workflow.name)
                error = error_record(exc)
        state = ItemState.FAILED if error else ItemState.COMPLETED
        await self._finish(state, None, error)

    def request_stop(self, reason: str) -> None:
        """Ask the execution to stop: ``paused`` at its next step boundary; ``canceled``,
        ``lost`` and ``shutdown`` at its next await."""
        if reason == "paused":
            self.pause_requested = True
            return
        self.stop_reason = reason
        self.cancel_requested = True
        for fut in list(self.thread_futures):
            fut.cancel()


@dataclass(frozen=True, slots=True)
class FailureInfo:
    """What an ``on_failure`` handler receives."""

    run_id: str
    workflow: str
    error: Any
