"""Acting on many runs chosen by a filter (the dashboard's bulk cancel and resume): the
runs a filter selects, counted up to a bound, and resume of many at once."""

from __future__ import annotations

from collections.abc import Sequence

from ..models import CLIENT_TRANSITIONS
from ..store import RunFilter
from .control import ControlMixin
from .core import Core

#: The most runs a bulk action by filter takes at once (and counts: "1000+").
BULK_MAX = 1000


class BulkMixin(ControlMixin):
    """Selections of runs and actions on them."""

    core: Core

    async def select_runs(
        self,
        action: str,
        *,
        workflow: str | None = None,
        statuses: Sequence[str] | None = None,
        task_id: str | None = None,
        schedule_id: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        limit: int = BULK_MAX,
    ) -> list[str]:
        """The ids (newest first, at most ``limit``) of the runs the filters select to
        which ``action`` (``cancel`` or ``resume``) applies now: each status asked for that
        the action takes, or all of those. A walk of one page per status, never a count
        over the history."""
        allowed = {s.value for s in CLIENT_TRANSITIONS[action]}
        wanted = sorted(allowed & set(statuses)) if statuses else sorted(allowed)
        if not wanted:
            return []
        ids: list[str] = []
        cursor: str | None = None
        while len(ids) < limit:
            page = await self.list_runs(
                workflow=workflow,
                status=wanted,
                task_id=task_id,
                schedule_id=schedule_id,
                created_after=created_after,
                created_before=created_before,
                cursor=cursor,
                limit=min(100, limit - len(ids)),
            )
            ids += [r.id for r in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        return ids

    async def resume_many(self, ids: Sequence[str]) -> list[str]:
        """Resume each of these runs that may be resumed now (PAUSED, FAILED, CANCELED,
        CRASHED), in one transaction; the ids resumed."""
        if not ids:
            return []
        resumed, _ = await self._transition(
            self.core.store.resume_txn, RunFilter(ids=list(ids)), None
        )
        return resumed
