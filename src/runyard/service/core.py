"""What every service call stands on: the settings, the workflows this process defines,
the store with its executor, the schema made ready once, and this process's hubs."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar, TypeVarTuple, overload

from ..config import Settings, redacted_url
from ..engine.registry import WorkflowDef
from ..errors import StoreUnavailable, WorkflowNotFound
from ..outbound.policy import OutboundPolicy
from ..store import Store, open_store
from ..store.dbexec import DbExecutor
from ..store.hub import Hub, Watcher
from ..store.tx import Later, Tx

R = TypeVar("R")
Ts = TypeVarTuple("Ts")


class Core:
    """One per :class:`~runyard.Runyard`: opened lazily, closed by :meth:`close`."""

    def __init__(self, settings: Settings, *, auto_migrate: bool = True) -> None:
        self.settings = settings
        self.auto_migrate = auto_migrate
        #: The workflows this process defines (its code), by name.
        self.workflows: dict[str, WorkflowDef] = {}
        self._store: Store | None = None
        self._db: DbExecutor | None = None
        self._ready = False
        self._ready_lock = threading.Lock()
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._watcher: Watcher | None = None
        self._outbound: OutboundPolicy | None = None

    # -- the database ---------------------------------------------------------------------

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

    def schema_version(self) -> int | None:
        """The newest migration the database has; None when it has no Runyard schema (a
        SQLite file that does not exist is not created by asking). StoreUnavailable when
        the database cannot be opened."""
        store = self.store
        path = getattr(store, "path", None)
        if store.backend == "sqlite" and path != ":memory:" and not os.path.exists(str(path)):
            return None
        try:
            conn = store.connect()
        except Exception as exc:
            where = redacted_url(self.settings.database_url)
            raise StoreUnavailable(f"cannot open the database {where}: {exc}") from exc
        try:
            row = conn.execute("SELECT max(version) FROM runyard_migrations").fetchone()
        except Exception as exc:
            if store.is_transient(exc):
                raise StoreUnavailable(f"the database is unavailable: {exc}") from exc
            return None  # no migrations table: a database Runyard never set up
        finally:
            store.close_connection(conn)
        version = next(iter(row.values() if isinstance(row, dict) else row), None)
        return int(version) if version else None

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

    @overload
    async def read(
        self, fn: Callable[[Tx, *Ts], Later[R]], /, *args: *Ts, inline: bool = False
    ) -> R: ...

    @overload
    async def read(self, fn: Callable[[Tx, *Ts], R], /, *args: *Ts, inline: bool = False) -> R: ...

    async def read(
        self, fn: Callable[[Tx, *Ts], object], /, *args: *Ts, inline: bool = False
    ) -> Any:
        """``fn(tx, *args)`` in a read transaction, the schema made ready first;
        ``inline`` for a read of a few rows (see :meth:`DbExecutor.read`)."""
        await self.ensure_ready()
        return await self.db.read(fn, *args, inline=inline)

    @overload
    async def write(
        self, fn: Callable[[Tx, *Ts], Later[R]], /, *args: *Ts, inline: bool = True
    ) -> R: ...

    @overload
    async def write(self, fn: Callable[[Tx, *Ts], R], /, *args: *Ts, inline: bool = True) -> R: ...

    async def write(
        self, fn: Callable[[Tx, *Ts], object], /, *args: *Ts, inline: bool = True
    ) -> Any:
        """``fn(tx, *args)`` in a write transaction, the schema made ready first;
        ``inline=False`` for a write whose size has no bound (never in the loop)."""
        await self.ensure_ready()
        return await self.db.write(fn, *args, inline=inline)

    def outbound_policy(self) -> OutboundPolicy:
        """What outbound calls (HTTP targets, callbacks) may reach: read once from the
        environment (``RUNYARD_OUTBOUND_ALLOW`` ...)."""
        if self._outbound is None:
            self._outbound = OutboundPolicy.from_env()
        return self._outbound

    # -- workflows defined here -----------------------------------------------------------

    def local_workflow(self, name: str, version: str | None) -> WorkflowDef | None:
        """This process's own definition of ``name``, if it is the version asked for."""
        wf = self.workflows.get(name)
        return wf if wf is not None and (version is None or wf.version == version) else None

    def workflow_for(self, name: str, version: str) -> WorkflowDef:
        wf = self.workflows.get(name)
        if wf is None or wf.version != version:
            raise WorkflowNotFound(f"workflow {name!r} version {version!r} is not served here")
        return wf

    # -- wake-ups -------------------------------------------------------------------------

    def hub(self, *, work: bool = False, runs: bool = True) -> Hub:
        """This event loop's hub, fed with the store's changes: this process's own
        commits and, through one watcher per process, other processes'. ``work``: the
        caller claims work (a worker), so the watcher also hears of new work; ``runs``:
        the caller waits for runs, so it hears of every run's changes (a worker's own
        loops pass False: they need to hear only of runs stopped)."""
        loop = asyncio.get_running_loop()
        store = self.store
        created = self._watcher is None
        if self._watcher is None:
            self._watcher = Watcher(store, store.changes)
        store.changes.want(work=work, runs=runs)
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
            store.changes.subscribe(hub)
            if self._watcher.hears_runs:  # (else it is told once the watcher does)
                hub.hear_runs()
            self._watcher.attach(loop)
        return hub

    def loop_hub(self) -> Hub | None:
        """The running loop's hub if it has one (nothing is started for it)."""
        return self._hubs.get(asyncio.get_running_loop())

    def close(self) -> None:
        """Stop the watcher and close the database connections."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._store is not None:
            for hub in self._hubs.values():
                self._store.changes.unsubscribe(hub)
            self._store.close()
        self._hubs.clear()
