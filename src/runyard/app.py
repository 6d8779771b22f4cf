"""``Runyard``: register workflows, start and manage runs from Python.

::

    yard = Runyard()                      # RUNYARD_DATABASE_URL, default sqlite:///runyard.db

    @yard.workflow(retries=3, timeout=3600)
    async def enrich(ctx: Context, company: Company) -> dict: ...

    handle = await yard.start("enrich", {"url": "https://example.com"})
    result = await handle.result(timeout=60)

``yard.sync`` offers the same calls for code that is not async.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

import jsonschema

from . import jsonutil
from .config import Settings
from .engine.registry import (
    FlowControl,
    RetryPolicy,
    RunDefaults,
    WorkflowDef,
    make_definition,
)
from .errors import (
    InvalidInput,
    NotFound,
    RunFailed,
    StoreUnavailable,
    Timeout,
    WorkflowNotFound,
)
from .models import (
    Attempt,
    Item,
    LogLine,
    NewInput,
    NewRun,
    Output,
    Page,
    Run,
    RunStatus,
    StepRecord,
    Transition,
    Waiter,
)
from .schemas import LATEST_S, MAX_DELAY_S, finite
from .store import RunFilter, Store, open_store
from .store.dbexec import DbExecutor
from .store.hub import Hub, Watcher, wait_event
from .store.records import run_from_row
from .store.tx import Row, Tx

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

RECORD_TTL_S = 1.0
INT32_MAX = 2**31 - 1  # what an INTEGER column holds on PostgreSQL
PRIORITY_MAX = 1000
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=\-]{0,199}$")
EVENT_ID_MAX = 300
MODES = ("async", "live")


class _RandomHex:
    """Random hex digits from the operating system's generator, read 4 KiB at a time:
    ``os.urandom`` per id released and retook the GIL on every request, and in a busy
    server retaking it waited for the database thread (measured with py-spy: 6 % of
    the server's samples at 1,800 POST /v1/runs a second)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._hex = ""
        self._at = 0
        # A forked child must not go on with its parent's digits (same ids, same ms).
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._hex, self._at = "", 0

    def take(self, digits: int) -> str:
        with self._lock:
            if self._at + digits > len(self._hex):
                self._hex, self._at = os.urandom(self._size).hex(), 0
            self._at += digits
            return self._hex[self._at - digits : self._at]


_random_hex = _RandomHex()


def generate_run_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return f"run_{int(time.time() * 1000):012x}{_random_hex.take(12)}"


def check_run_id(run_id: str, field: str = "run_id") -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise InvalidInput(
            f"{field} must be 1-200 characters: letters, digits and . _ : @ + = - "
            "(starting with a letter or digit)",
            details=[{"field": field, "error": "invalid run id"}],
        )
    return run_id


def check_event_id(event_id: str) -> str:
    if (
        not isinstance(event_id, str)
        or not event_id
        or len(event_id) > EVENT_ID_MAX
        or any(ord(ch) < 32 for ch in event_id)
    ):
        raise InvalidInput(
            f"event_id must be 1-{EVENT_ID_MAX} printable characters",
            details=[{"field": "event_id", "error": "invalid event id"}],
        )
    return event_id


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(jsonutil.loads(schema_text) or {})


def validate_against_schema(
    workflow: str, schema: dict[str, Any] | str | None, value: Any, field: str
) -> None:
    """Check an input against the JSON Schema a worker published for ``workflow`` (how a
    process without the workflow's code, such as the server, validates); the schema as
    stored (JSON text) or parsed."""
    if not schema or schema in ("{}", "null"):
        return
    validator = _validator(schema if isinstance(schema, str) else jsonutil.dumps(schema))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    details = [
        {
            "field": ".".join([field, *(str(p) for p in e.absolute_path)]),
            "error": e.message,
            "type": str(e.validator),
        }
        for e in errors
    ]
    raise InvalidInput(
        f"{field} does not match the input type of workflow {workflow!r}: "
        + "; ".join(f"{d['field']}: {d['error']}" for d in details),
        details=details,
    )


class _Broadcast:
    """Forwards wake-ups to every hub of this process (one per event loop)."""

    def __init__(self) -> None:
        self.hubs: list[Hub] = []

    def notify_wake(self, at: float | None = None) -> None:
        for h in list(self.hubs):
            h.notify_wake(at)

    def notify_run(self, run_id: str) -> None:
        for h in list(self.hubs):
            h.notify_run(run_id)

    def notify_runs(self, run_ids: list[str]) -> None:
        for h in list(self.hubs):
            h.notify_runs(run_ids)

    def notify_all(self) -> None:
        for h in list(self.hubs):
            h.notify_all()

    def hear_runs(self) -> None:
        for h in list(self.hubs):
            h.hear_runs()


class RunHandle:
    """A started run: ask for its status or wait for its result."""

    def __init__(
        self,
        yard: Runyard,
        run_id: str,
        created: bool = True,
        row: Row | None = None,
        seen: tuple[Hub, int] | None = None,
    ) -> None:
        self.yard = yard
        self.id = run_id
        self.created = created
        self._row = row
        # The hub of the loop that wrote ``row`` and its mark from before the write: while
        # that hub has heard nothing of the run since, ``row`` is the run as it is.
        self._seen = seen

    @property
    def initial(self) -> Run | None:
        """The run as :meth:`Runyard.start` (or :meth:`Runyard.continue_`) wrote it, or
        found it when ``run_id`` existed."""
        return run_from_row(self._row) if self._row is not None else None

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    async def get(self) -> Run:
        return await self.yard.get_run(self.id)

    async def status(self) -> RunStatus:
        return (await self.get()).status

    async def wait(self, timeout: float | None = None) -> Run:
        known = None
        if self._row is not None and self._seen is not None:
            known = (run_from_row(self._row), *self._seen)
        return await self.yard._wait(self.id, timeout, known)

    async def result(self, timeout: float | None = None) -> Any:
        """The run's result once it finished; :class:`RunFailed` if it ended without one,
        :class:`Timeout` if it is still going after ``timeout`` seconds."""
        run = await self.wait(timeout)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL_SUCCEEDED):
            return run.result
        message = (run.error or {}).get("message") if isinstance(run.error, dict) else None
        raise RunFailed(
            f"run {run.id} ended {run.status.value}" + (f": {message}" if message else ""),
            status=run.status.value,
            details=run.error,
        )

    async def cancel(self) -> None:
        await self.yard.cancel(self.id)


class Runyard:
    """The registry of workflows and the entry point to runs."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        auto_migrate: bool = True,
    ) -> None:
        self.settings = settings or Settings.from_env(database_url)
        self.auto_migrate = auto_migrate
        self.workflows: dict[str, WorkflowDef] = {}
        self._store: Store | None = None
        self._db: DbExecutor | None = None
        self._ready = False
        self._ready_lock = threading.Lock()
        self._broadcast = _Broadcast()
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._watcher: Watcher | None = None
        self._sync: SyncRunyard | None = None
        self._records: dict[
            tuple[str, str | None], tuple[float, tuple[RunDefaults, str | None]]
        ] = {}

    # -- registration ---------------------------------------------------------------------

    @overload
    def workflow(self, fn: F) -> F: ...

    @overload
    def workflow(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        version: str = "1",
        description: str | None = None,
        input: Any = None,
        retries: int | RetryPolicy | None = None,
        timeout: float | None = None,
        flow_control: FlowControl | None = None,
        max_recovery_attempts: int = 5,
        on_failure: Callable[..., Any] | None = None,
        priority: int = 0,
    ) -> Callable[[F], F]: ...

    def workflow(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        version: str = "1",
        description: str | None = None,
        input: Any = None,
        retries: int | RetryPolicy | None = None,
        timeout: float | None = None,
        flow_control: FlowControl | None = None,
        max_recovery_attempts: int = 5,
        on_failure: Callable[..., Any] | None = None,
        priority: int = 0,
    ) -> F | Callable[[F], F]:
        """Register a workflow: ``fn(ctx, input)``, ``async def`` or plain ``def``.

        ``retries`` (a count, or a :class:`RetryPolicy`) retries the body when it raises
        (its completed steps replayed; not :class:`~runyard.NonRetryableError`, bad
        arguments or a timeout) and is the default for its steps; ``timeout`` bounds a
        run (seconds);
        ``flow_control`` limits its items across all workers; ``on_failure(info)`` runs
        once when a run ends FAILED or CRASHED."""

        def register(f: F) -> F:
            wf = make_definition(
                f,
                name=name,
                version=version,
                description=description,
                input_type=input,
                retries=retries,
                timeout_s=timeout,
                flow_control=flow_control,
                max_recovery_attempts=max_recovery_attempts,
                on_failure=on_failure,
                priority=priority,
            )
            if wf.name in self.workflows:
                raise ValueError(f"workflow {wf.name!r} is registered twice")
            self.workflows[wf.name] = wf
            return f

        return register(fn) if fn is not None else register

    def workflow_for(self, name: str, version: str) -> WorkflowDef:
        wf = self.workflows.get(name)
        if wf is None or wf.version != version:
            raise WorkflowNotFound(f"workflow {name!r} version {version!r} is not served here")
        return wf

    # -- plumbing -------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings.database_url)
        return self._store

    @property
    def db(self) -> DbExecutor:
        if self._db is None:
            self._db = DbExecutor(self.store, retry_for_s=self.settings.db_retry_s)
        return self._db

    def migrate(self) -> list[int]:
        """Apply pending migrations (``runyard db upgrade``)."""
        applied = self.store.upgrade()
        self._ready = True
        return applied

    async def ensure_ready(self) -> None:
        if self._ready or not self.auto_migrate:
            return
        await asyncio.to_thread(self._ensure_ready_sync)

    def _ensure_ready_sync(self) -> None:
        with self._ready_lock:
            if not self._ready:
                try:
                    self.migrate()
                except Exception as exc:
                    if self.store.is_transient(exc):
                        raise StoreUnavailable(f"the database is unavailable: {exc}") from exc
                    raise

    def hub(self, *, work: bool = False, runs: bool = True) -> Hub:
        """This event loop's hub, fed by a watcher of other processes' commits. ``work``:
        the caller claims work (a worker), so the watcher also hears of new work;
        ``runs``: the caller waits for runs, so it hears of every run's changes (a
        worker's own loops pass False: they need to hear only of runs stopped)."""
        loop = asyncio.get_running_loop()
        created = self._watcher is None
        if self._watcher is None:
            self._watcher = Watcher(self.store, self._broadcast)
        if work:
            self._watcher.want_work()
        if runs:
            self._watcher.want_runs()
        if created:
            self._watcher.start()
        hub = self._hubs.get(loop)
        if hub is None:
            hub = Hub(loop)
            self._hubs[loop] = hub
            self._broadcast.hubs.append(hub)
            if self._watcher.hears_runs:  # (else it is told once the watcher does)
                hub.hear_runs()
            self._watcher.attach(loop)
        return hub

    def notify_run_changed(self, run_id: str) -> None:
        self._broadcast.notify_run(run_id)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop the background threads and close the database connection."""
        if self._sync is not None:
            self._sync._stop()
            self._sync = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._store is not None:
            self._store.close()
        self._hubs.clear()
        self._broadcast.hubs.clear()

    async def _write(self, fn: Callable[..., T], *args: Any, inline: bool = True) -> T:
        await self.ensure_ready()
        return await self.db.write(fn, *args, inline=inline)

    async def _read(self, fn: Callable[..., T], *args: Any, inline: bool = False) -> T:
        await self.ensure_ready()
        return await self.db.read(fn, *args, inline=inline)

    # -- starting runs --------------------------------------------------------------------

    async def start(
        self,
        workflow: str | Callable[..., Any],
        input: Any = None,
        *,
        inputs: Sequence[Any] | None = None,
        run_id: str | None = None,
        custom_data: Any = None,
        mode: str = "async",
        priority: int | None = None,
        delay: float | None = None,
        not_before: datetime | float | None = None,
        flow_control: FlowControl | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        sync_mode: str | None = None,
        max_results: int | None = None,
        task_id: str | None = None,
        schedule_id: str | None = None,
        version: str | None = None,
    ) -> RunHandle:
        """Start a run of ``workflow`` with one ``input`` or several ``inputs`` (each a
        value, or ``{"input": ..., "custom_data": ...}``). An existing ``run_id`` returns
        that run instead (no second execution)."""
        new = await self._new_run(
            workflow,
            input,
            inputs=inputs,
            run_id=run_id,
            custom_data=custom_data,
            mode=mode,
            priority=priority,
            delay=delay,
            not_before=not_before,
            flow_control=flow_control,
            retries=retries,
            timeout=timeout,
            sync_mode=sync_mode,
            max_results=max_results,
            task_id=task_id,
            schedule_id=schedule_id,
            version=version,
        )
        await self.ensure_ready()
        # A process that waits for runs has a hub: mark it before the run exists, so that
        # waiting for the run needs no first read unless the hub hears of it meanwhile.
        hub = self._hubs.get(asyncio.get_running_loop())
        seen = (hub, hub.mark()) if hub is not None else None
        # (A run of many inputs is written by the database thread, never in the loop.)
        row, created = await self.db.write(
            self.store.create_run_txn, new, order=new.id, inline=len(new.inputs) <= 16
        )
        if created:
            self._broadcast.notify_wake(new.due_at())
        return RunHandle(self, new.id, created, row, seen)

    async def _new_run(
        self,
        workflow: str | Callable[..., Any],
        input: Any,
        *,
        inputs: Sequence[Any] | None,
        run_id: str | None,
        custom_data: Any,
        mode: str,
        priority: int | None,
        delay: float | None,
        not_before: datetime | float | None,
        flow_control: FlowControl | None,
        retries: int | None,
        timeout: float | None,
        sync_mode: str | None,
        max_results: int | None,
        task_id: str | None,
        schedule_id: str | None,
        version: str | None,
    ) -> NewRun:
        name = workflow if isinstance(workflow, str) else getattr(workflow, "__name__", "")
        if not isinstance(workflow, str):
            for wf_name, wf_def in self.workflows.items():
                if wf_def.fn is workflow:
                    name = wf_name
        if mode not in MODES:
            raise InvalidInput(
                f"mode must be one of {', '.join(MODES)}",
                details=[{"field": "mode", "error": "unknown mode"}],
            )
        if sync_mode not in (None, "full", "incremental"):
            raise InvalidInput(
                "sync_mode must be full or incremental",
                details=[{"field": "sync_mode", "error": "unknown sync mode"}],
            )
        finite(delay, "delay", maximum=MAX_DELAY_S)
        finite(timeout, "timeout")
        not_before_s = finite(
            not_before.timestamp() if isinstance(not_before, datetime) else not_before,
            "not_before",
            minimum=None,
            maximum=LATEST_S,
        )
        if max_results is not None and (
            not isinstance(max_results, int) or not 1 <= max_results <= INT32_MAX
        ):
            raise InvalidInput(
                f"max_results must be an integer from 1 to {INT32_MAX}",
                details=[{"field": "max_results", "error": "out of range"}],
            )
        if priority is not None and (
            not isinstance(priority, int) or not -PRIORITY_MAX <= priority <= PRIORITY_MAX
        ):
            raise InvalidInput(
                f"priority must be an integer from {-PRIORITY_MAX} to {PRIORITY_MAX}",
                details=[{"field": "priority", "error": "out of range"}],
            )
        if retries is not None and (not isinstance(retries, int) or not 0 <= retries <= 100):
            raise InvalidInput(
                "retries must be an integer >= 0",
                details=[{"field": "retries", "error": "not >= 0"}],
            )
        wf = self._local_workflow(name, version)
        schema: str | None = None
        if wf is not None:
            defaults = wf.run_defaults()
        else:
            published = await self._published(name, version)
            if published is None:
                what = f"{name!r} version {version!r}" if version else repr(name)
                raise WorkflowNotFound(
                    f"no workflow {what} is registered",
                    details=[{"field": "workflow", "error": "unknown workflow"}],
                )
            defaults, schema = published
        wf_version = defaults.version
        if inputs is not None and input is not None:
            raise InvalidInput(
                "give input or inputs, not both",
                details=[{"field": "inputs", "error": "both input and inputs"}],
            )
        raw = list(inputs) if inputs is not None else [{"input": input, "custom_data": custom_data}]
        if not raw:
            raise InvalidInput("inputs is empty", details=[{"field": "inputs", "error": "empty"}])
        new_inputs: list[NewInput] = []
        for i, entry in enumerate(raw):
            if inputs is not None and isinstance(entry, dict) and "input" in entry:
                value, cdata = entry["input"], entry.get("custom_data")
            elif inputs is None:
                value, cdata = entry["input"], entry["custom_data"]
            else:
                value, cdata = entry, None
            field = f"inputs[{i}]" if inputs is not None else "input"
            value = jsonutil.to_jsonable(value)
            jsonutil.dumps(value, what=field)
            jsonutil.dumps(cdata, what=f"{field}.custom_data")
            err = None
            try:
                if wf is not None:
                    wf.validate_input(value, field)
                else:
                    validate_against_schema(name, schema, value, field)
            except InvalidInput as exc:
                if inputs is None:
                    raise
                err = exc.to_dict()
            new_inputs.append(NewInput(input=value, custom_data=cdata, error=err))
        await self._check_task(task_id, name)
        fc = flow_control or defaults.flow_control
        options: dict[str, Any] = {}
        if retries is not None:
            options["retries"] = retries
        return NewRun(
            id=check_run_id(run_id) if run_id is not None else generate_run_id(),
            workflow=name,
            workflow_version=wf_version,
            inputs=new_inputs,
            mode=mode,
            priority=priority if priority is not None else defaults.priority,
            not_before=not_before_s,
            delay_s=delay,
            flow_key=fc.key if fc else None,
            flow_limits=flow_control.to_dict() if flow_control is not None else None,
            timeout_s=timeout if timeout is not None else defaults.timeout_s,
            max_recovery_attempts=defaults.max_recovery_attempts,
            has_on_failure=defaults.has_on_failure,
            task_id=task_id,
            schedule_id=schedule_id,
            sync_mode=sync_mode,
            max_results=max_results,
            options=options,
        )

    async def _check_task(self, task_id: str | None, workflow: str) -> None:
        """A run started from a task names a stored task of its own workflow (422 naming
        ``task_id`` otherwise, before anything is written)."""
        if task_id is None:
            return
        try:
            task = await self._read(self.store.get_task, task_id, inline=True)
        except NotFound:
            raise InvalidInput(
                f"no task {task_id!r}",
                details=[{"field": "task_id", "error": "unknown task"}],
            ) from None
        if task["workflow"] != workflow:
            raise InvalidInput(
                f"task {task_id!r} is a task of workflow {task['workflow']!r}, not {workflow!r}",
                details=[{"field": "task_id", "error": "a task of another workflow"}],
            )

    def _local_workflow(self, name: str, version: str | None) -> WorkflowDef | None:
        """This process's own definition of ``name``, if it is the version asked for."""
        wf = self.workflows.get(name)
        return wf if wf is not None and (version is None or wf.version == version) else None

    async def run_defaults(self, name: str, version: str | None = None) -> RunDefaults | None:
        """What a new run of workflow ``name`` takes from its definition (this process's
        code, else what the workers published, cached for a second); None if unknown."""
        wf = self._local_workflow(name, version)
        if wf is not None:
            return wf.run_defaults()
        published = await self._published(name, version)
        return published[0] if published is not None else None

    async def _published(
        self, name: str, version: str | None
    ) -> tuple[RunDefaults, str | None] | None:
        """What workers published for a workflow: its run defaults and input schema (JSON
        text), cached for a second (a deploy is seen within that second)."""
        key = (name, version)
        hit = self._records.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < RECORD_TTL_S:
            return hit[1]
        record = await self._read(self.store.get_workflow, name, version, inline=True)
        if record is None:
            return None
        options = jsonutil.loads(record["options"]) or {}
        published = (RunDefaults.from_record(record["version"], options), record["input_schema"])
        self._records[key] = (now, published)
        return published

    # -- reading --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        return await self._read(self.store.get_run, run_id, inline=True)

    def handle(self, run_id: str) -> RunHandle:
        return RunHandle(self, run_id, created=False)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | Sequence[str] | None = None,
        task_id: str | None = None,
        schedule_id: str | None = None,
        mode: str | None = None,
        prefix: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
        order: str = "desc",
    ) -> Page:
        statuses = [status] if isinstance(status, str) else list(status or [])
        for s in statuses:
            if s not in RunStatus.__members__:
                raise InvalidInput(
                    f"unknown status {s!r}",
                    details=[{"field": "status", "error": "unknown status"}],
                )
        filt = RunFilter(
            workflow=workflow,
            statuses=statuses or None,
            task_id=task_id,
            schedule_id=schedule_id,
            mode=mode,
            prefix=prefix,
            created_after=created_after,
            created_before=created_before,
        )
        return await self._read(self.store.list_runs, filt, cursor, limit, order)

    async def steps(self, run_id: str) -> list[StepRecord]:
        await self.get_run(run_id)
        return await self._read(self.store.get_steps, run_id)

    async def attempts(self, run_id: str) -> list[Attempt]:
        return await self._read(self.store.get_attempts, run_id)

    async def items(
        self, run_id: str, *, state: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[Item]:
        await self.get_run(run_id)
        return await self._read(
            functools.partial(self.store.get_items, state=state, offset=offset, limit=limit),
            run_id,
        )

    async def outputs(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[Output]:
        await self.get_run(run_id)
        return await self._read(self.store.get_outputs, run_id, after, limit, inline=limit <= 100)

    async def logs(
        self, run_id: str, *, after: int | None = None, limit: int = 100
    ) -> list[LogLine]:
        """The lines the run's workflow logged through ``ctx.logger``, in the order they
        were written: up to ``limit`` (1-10000) after the line with id ``after``."""
        if not isinstance(after, int | None) or isinstance(after, bool) or (after or 0) < 0:
            raise InvalidInput(
                "after must be a log line id (an integer >= 0)",
                details=[{"field": "after", "error": "not a log line id"}],
            )
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
            raise InvalidInput(
                "limit must be an integer between 1 and 10000",
                details=[{"field": "limit", "error": "between 1 and 10000"}],
            )
        await self.get_run(run_id)
        return await self._read(self.store.get_logs, run_id, after or 0, limit, inline=limit <= 100)

    async def transitions(self, run_id: str) -> list[Transition]:
        return await self._read(self.store.get_transitions, run_id)

    async def waiters(self, event_id: str) -> list[Waiter]:
        return await self._read(self.store.get_waiters, check_event_id(event_id))

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """The run once it is terminal; :class:`Timeout` after ``timeout`` seconds."""
        return await self._wait(run_id, timeout)

    async def _wait(
        self, run_id: str, timeout: float | None, known: tuple[Run, Hub, int] | None = None
    ) -> Run:
        """:meth:`wait`; ``known``: the run as it was at a mark of a hub, taken for the
        run's state instead of a first read while that hub has heard nothing of it since."""
        await self.ensure_ready()
        hub = self.hub()
        ev = hub.run_event(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                ev.clear()
                if (
                    known is not None
                    and known[1] is hub
                    and not hub.changed_since(run_id, known[2])
                ):
                    run = known[0]
                else:
                    run = await self.get_run(run_id)
                known = None
                if run.terminal:
                    return run
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Timeout(
                        f"run {run_id} is still {run.status.value} after {timeout} s",
                        details={"run_id": run_id, "status": run.status.value},
                    )
                step = (
                    self.settings.poll_s
                    if remaining is None
                    else min(remaining, self.settings.poll_s)
                )
                with contextlib.suppress(TimeoutError):
                    await wait_event(ev, step)
        finally:
            hub.drop_run_event(run_id, ev)

    # -- changing runs --------------------------------------------------------------------

    async def _transition(self, fn: Callable[..., list[str]], filt: RunFilter) -> list[str]:
        ids, _ = await self._transition_reading(fn, filt, None)
        return ids

    async def _transition_reading(
        self, fn: Callable[..., list[str]], filt: RunFilter, run_id: str | None
    ) -> tuple[list[str], Run | None]:
        """Apply ``fn`` to the runs ``filt`` selects; with ``run_id``, also that run as the
        transition left it, read in the same transaction (a worker may move it on at once)."""
        store = self.store

        def txn(tx: Tx, filt: RunFilter) -> tuple[list[str], Run | None]:
            return fn(tx, filt), store.get_run(tx, run_id) if run_id is not None else None

        ids, run = await self._write(txn, filt, inline=filt.ids is not None and len(filt.ids) <= 1)
        for changed in ids:
            self._broadcast.notify_run(changed)
        if ids:
            self._broadcast.notify_wake()
        return ids, run

    async def cancel(
        self,
        run_id: str | None = None,
        *,
        ids: Sequence[str] | None = None,
        workflow: str | None = None,
        prefix: str | None = None,
        all: bool = False,
    ) -> list[str]:
        """Cancel one run, a list, every run of a workflow or id prefix, or ``all``
        non-terminal runs; the ids canceled."""
        single = run_id is not None
        if run_id is not None:
            ids = [run_id]
        filt = RunFilter(ids=ids, workflow=workflow, prefix=prefix, all=all, single=single)
        return await self._transition(self.store.cancel_txn, filt)

    async def pause(self, run_id: str) -> Run:
        """Stop the run at its next step boundary; the run as the pause left it."""
        return await self._transition_one(self.store.pause_txn, run_id)

    async def resume(self, run_id: str) -> Run:
        """Continue a PAUSED, FAILED, CANCELED or CRASHED run from its last checkpoint;
        the run as the resume left it (QUEUED)."""
        return await self._transition_one(self.store.resume_txn, run_id)

    async def _transition_one(self, fn: Callable[..., list[str]], run_id: str) -> Run:
        _, run = await self._transition_reading(fn, RunFilter(ids=[run_id], single=True), run_id)
        assert run is not None
        return run

    async def continue_(self, run_id: str) -> RunHandle:
        """Start the next iteration of a finished (incremental) run."""
        row = await self._write(self.store.continue_txn, run_id)
        self._broadcast.notify_run(run_id)
        self._broadcast.notify_wake()
        return RunHandle(self, run_id, created=False, row=row)

    async def fork(
        self,
        run_id: str,
        from_step: int | str,
        *,
        new_run_id: str | None = None,
        input: Any = None,
        version: str | None = None,
    ) -> RunHandle:
        """A new run that reuses ``run_id``'s checkpoints before ``from_step`` (a position
        as listed by :meth:`steps`, from 1 to one past the last, or a step name) and
        executes from there, with a new ``input`` (validated as a start's) or another
        registered ``version`` of the workflow if given. A ``new_run_id`` that exists
        already returns that run (no second run, as for :meth:`start`)."""
        source = await self.get_run(run_id)
        position = from_step
        if isinstance(from_step, str):
            matches = [s.position for s in await self.steps(run_id) if s.name == from_step]
            if not matches:
                raise InvalidInput(
                    f"run {run_id} has no step named {from_step!r}",
                    details=[{"field": "from_step", "error": "no such step"}],
                )
            position = min(matches)
        if isinstance(position, bool) or not isinstance(position, int) or position < 1:
            raise InvalidInput(
                "from_step must be a position >= 1 or a step name",
                details=[{"field": "from_step", "error": "invalid"}],
            )
        new_id = (
            check_run_id(new_run_id, "new_run_id") if new_run_id is not None else generate_run_id()
        )
        text = await self._fork_input(source, input, version)
        _row, created = await self._write(
            self.store.fork_txn, run_id, new_id, position, text, version
        )
        if created:
            self._broadcast.notify_wake()
        return RunHandle(self, new_id, created)

    async def _fork_input(self, source: Run, input: Any, version: str | None) -> str | None:
        """A fork's new input as stored (None: the source's inputs), checked against the
        workflow version the fork runs, which must be registered."""
        if input is None and version is None:
            return None
        target = version or source.workflow_version
        wf = self._local_workflow(source.workflow, target)
        published = None if wf is not None else await self._published(source.workflow, target)
        if wf is None and published is None:
            whose = "" if version is not None else " (the source run's)"
            raise WorkflowNotFound(
                f"workflow {source.workflow!r} has no registered version {target!r}{whose}",
                details=[{"field": "version", "error": "unknown version"}],
            )
        if input is None:
            return None
        value = jsonutil.to_jsonable(input)
        text = jsonutil.dumps(value, what="input")
        if wf is not None:
            wf.validate_input(value, "input")
        elif published is not None:
            validate_against_schema(source.workflow, published[1], value, "input")
        return text

    async def notify(self, event_id: str, data: Any = None) -> list[str]:
        """Store event ``event_id`` and wake the runs waiting for it; their ids."""
        check_event_id(event_id)
        text = jsonutil.dumps(data, what="data")
        woken = await self._write(self.store.notify_txn, event_id, text)
        if woken:
            self._broadcast.notify_wake()
        return woken

    async def purge(self, older_than_days: float | None = None, *, batch: int | None = None) -> int:
        """Delete the runs that ended more than ``older_than_days`` ago (default
        ``RUNYARD_RETENTION_DAYS``) with everything they own, ``batch`` runs a transaction
        (default: the backend's, see :mod:`runyard.store.retention`); how many runs were
        deleted. Runs that have not ended, or still have work to do, are kept. Events
        notified before the cutoff are deleted too."""
        days = self.settings.retention_days if older_than_days is None else older_than_days
        finite(days, "older_than_days")
        batch = self.store.purge_batch if batch is None else batch
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise InvalidInput(
                "batch must be an integer >= 1",
                details=[{"field": "batch", "error": "not an integer >= 1"}],
            )
        cutoff = await self._read(self.store.now, inline=True) - days * 86400
        while await self._write(self.store.purge_events_txn, cutoff, batch, inline=False) == batch:
            pass  # (fewer: the oldest left are newer than the cutoff)
        total = 0
        while True:
            started = time.monotonic()
            n = await self._write(self.store.purge_txn, cutoff, batch, inline=False)
            total += n
            if n < batch:
                return total
            await asyncio.sleep((time.monotonic() - started) * self.store.purge_rest)

    # -- workers and the synchronous facade ------------------------------------------------

    def worker(self, **kwargs: Any) -> Any:
        """A :class:`~runyard.worker.Worker` for this yard's workflows."""
        from .worker import Worker

        return Worker(self, **kwargs)

    @property
    def sync(self) -> SyncRunyard:
        if self._sync is None:
            self._sync = SyncRunyard(self)
        return self._sync


class SyncRunHandle:
    def __init__(self, facade: SyncRunyard, handle: RunHandle) -> None:
        self._f = facade
        self._h = handle
        self.id = handle.id
        self.created = handle.created

    def get(self) -> Run:
        return self._f._call(self._h.get())

    def status(self) -> RunStatus:
        return self._f._call(self._h.status())

    def result(self, timeout: float | None = None) -> Any:
        return self._f._call(self._h.result(timeout))

    def cancel(self) -> None:
        self._f._call(self._h.cancel())


class SyncRunyard:
    """The in-process API for code that is not async (runs a private event loop)."""

    def __init__(self, yard: Runyard) -> None:
        self._yard = yard
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="runyard-sync", daemon=True
        )
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def start(
        self, workflow: str | Callable[..., Any], input: Any = None, **kw: Any
    ) -> SyncRunHandle:
        return SyncRunHandle(self, self._call(self._yard.start(workflow, input, **kw)))

    def handle(self, run_id: str) -> SyncRunHandle:
        return SyncRunHandle(self, self._yard.handle(run_id))

    def get_run(self, run_id: str) -> Run:
        return self._call(self._yard.get_run(run_id))

    def list_runs(self, **kw: Any) -> Page:
        return self._call(self._yard.list_runs(**kw))

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        return self._call(self._yard.wait(run_id, timeout))

    def cancel(self, run_id: str | None = None, **kw: Any) -> list[str]:
        return self._call(self._yard.cancel(run_id, **kw))

    def pause(self, run_id: str) -> Run:
        return self._call(self._yard.pause(run_id))

    def resume(self, run_id: str) -> Run:
        return self._call(self._yard.resume(run_id))

    def continue_(self, run_id: str) -> SyncRunHandle:
        return SyncRunHandle(self, self._call(self._yard.continue_(run_id)))

    def fork(self, run_id: str, from_step: int | str, **kw: Any) -> SyncRunHandle:
        return SyncRunHandle(self, self._call(self._yard.fork(run_id, from_step, **kw)))

    def notify(self, event_id: str, data: Any = None) -> list[str]:
        return self._call(self._yard.notify(event_id, data))

    def steps(self, run_id: str) -> list[StepRecord]:
        return self._call(self._yard.steps(run_id))

    def outputs(self, run_id: str, **kw: Any) -> list[Output]:
        return self._call(self._yard.outputs(run_id, **kw))

    def logs(self, run_id: str, **kw: Any) -> list[LogLine]:
        return self._call(self._yard.logs(run_id, **kw))

    def purge(self, older_than_days: float | None = None, **kw: Any) -> int:
        return self._call(self._yard.purge(older_than_days, **kw))
