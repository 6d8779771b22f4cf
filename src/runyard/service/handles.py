"""A started run, as every front door hands it back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import RunFailed
from ..models import Run, RunStatus
from ..store.hub import Hub
from ..store.records import run_from_row
from ..store.tx import Row

if TYPE_CHECKING:
    from . import Service


class RunHandle:
    """A started run: ask for its status or wait for its result."""

    def __init__(
        self,
        service: Service,
        run_id: str,
        created: bool = True,
        row: Row | None = None,
        seen: tuple[Hub, int] | None = None,
    ) -> None:
        self.service = service
        self.id = run_id
        self.created = created
        # The run as written (converted when asked: most handles are never asked), and
        # the hub of the loop that wrote it with its mark from before the write: while
        # that hub has heard nothing of the run since, the row is the run as it is.
        self._row = row
        self._seen = seen

    @property
    def initial(self) -> Run | None:
        """The run as :meth:`Runyard.start` (or :meth:`Runyard.continue_`) wrote it, or
        found it when ``run_id`` existed."""
        return run_from_row(self._row) if self._row is not None else None

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def is_as_written(self) -> bool:
        """Whether :attr:`initial` is still the run as it is: the hub of the loop that
        wrote it (this loop's) has heard nothing of the run since."""
        if self._row is None or self._seen is None:
            return False
        hub, mark = self._seen
        return hub is self.service.core.loop_hub() and not hub.changed_since(self.id, mark)

    async def get(self) -> Run:
        return await self.service.get_run(self.id)

    async def status(self) -> RunStatus:
        return (await self.get()).status

    async def wait(self, timeout: float | None = None) -> Run:
        known = None
        if self._row is not None and self._seen is not None:
            known = (run_from_row(self._row), *self._seen)
        return await self.service.wait(self.id, timeout, known=known)

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
        await self.service.cancel(self.id)
