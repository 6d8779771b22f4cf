"""The in-process API for code that is not async: :class:`SyncRunyard` (``yard.sync``)
runs :class:`~runyard.Runyard`'s calls on a private event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .models import LogLine, Output, Page, Run, RunStatus, StepRecord
from .service import RunHandle

if TYPE_CHECKING:
    from .app import Runyard

T = TypeVar("T")


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

    def stop(self) -> None:
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
