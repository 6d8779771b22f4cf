"""``Runyard``: register workflows, start and manage runs from Python.

::

    yard = Runyard()                      # RUNYARD_DATABASE_URL, default sqlite:///.runyard/runyard.db

    @yard.workflow(retries=3, timeout=3600)
    async def enrich(ctx: Context, company: Company) -> dict: ...

    handle = await yard.start("enrich", {"url": "https://example.com"})
    result = await handle.result(timeout=60)

``yard.sync`` offers the same calls for code that is not async. ``Runyard`` is the
in-process front door: it holds the workflows this process defines and hands every
call to the service layer (:mod:`runyard.service`), as the HTTP API and the CLI do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .config import Settings
from .engine.registry import FlowControl, RetryPolicy, WorkflowDef, make_definition
from .service import Core, RunHandle, Service, StartRequest
from .sync_api import SyncRunyard

if TYPE_CHECKING:
    from .store import Store
    from .store.dbexec import DbExecutor
    from .store.hub import Hub
    from .worker import Worker

F = TypeVar("F", bound=Callable[..., Any])


class Runyard(Service):
    """The registry of workflows and the entry point to runs: the in-process front door,
    the service layer itself (:class:`~runyard.service.Service`) with the workflows this
    process defines and ``start``'s keyword arguments."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        auto_migrate: bool = True,
    ) -> None:
        super().__init__(
            Core(settings or Settings.from_env(database_url), auto_migrate=auto_migrate)
        )
        self._sync: SyncRunyard | None = None

    @property
    def service(self) -> Service:
        """The service layer every front door calls (this yard itself)."""
        return self

    @property
    def workflows(self) -> dict[str, WorkflowDef]:
        """The workflows this process defines, by name."""
        return self.core.workflows

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
        return self.core.workflow_for(name, version)

    # -- plumbing -------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def db(self) -> DbExecutor:
        return self.core.db

    def migrate(self) -> list[int]:
        """Apply pending migrations (``runyard db upgrade``)."""
        return self.core.migrate()

    async def ensure_ready(self) -> None:
        await self.core.ensure_ready()

    def hub(self, *, work: bool = False, runs: bool = True) -> Hub:
        """This event loop's hub (see :meth:`Core.hub <runyard.service.Core.hub>`)."""
        return self.core.hub(work=work, runs=runs)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop the background threads and close the database connection."""
        if self._sync is not None:
            self._sync.stop()
            self._sync = None
        self.core.close()

    # -- runs -----------------------------------------------------------------------------

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
        callback: Mapping[str, Any] | None = None,
    ) -> RunHandle:
        """Start a run of ``workflow`` (its name, or the function registered) with one
        ``input`` or several ``inputs`` (each a value, or ``{"input": ...,
        "custom_data": ...}``). An existing ``run_id`` returns that run instead (no
        second execution). ``callback``: ``{"url": ..., "headers": {...}}`` where the
        run reports its outputs and its end (signed; see docs/callbacks.md)."""
        req = StartRequest(
            workflow=self._name_of(workflow),
            input=input,
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
            callback=callback,
        )
        return await self.start_run(req)

    def _name_of(self, workflow: str | Callable[..., Any]) -> str:
        if isinstance(workflow, str):
            return workflow
        for name, wf in self.workflows.items():
            if wf.fn is workflow:
                return name
        return str(getattr(workflow, "__name__", ""))

    # -- workers and the synchronous facade ------------------------------------------------

    def worker(self, **kwargs: Any) -> Worker:
        """A :class:`~runyard.worker.Worker` for this yard's workflows."""
        from .worker import Worker

        return Worker(self, **kwargs)

    @property
    def sync(self) -> SyncRunyard:
        if self._sync is None:
            self._sync = SyncRunyard(self)
        return self._sync
