"""The one way changes reach this process's hubs (see :class:`Changes`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .tx import RUN, RUN_END, STOP, WAKE, wake_due

if TYPE_CHECKING:
    from .hub import Hub


class Changes:
    """Every hub of this process, and the one way changes reach them: the store calls
    :meth:`committed` with what each of its transactions announced, right after the
    commit; the :class:`Watcher` tells of other processes' commits through the
    ``notify_*`` methods. A process hears of new work only once it runs a worker, and of
    every run's changes only once something waits for runs (:meth:`want`), as its
    watcher does; runs stopped (canceled, paused) always."""

    def __init__(self) -> None:
        self.hubs: list[Hub] = []
        self._work = False
        self._runs = False

    def subscribe(self, hub: Hub) -> None:
        self.hubs.append(hub)

    def unsubscribe(self, hub: Hub) -> None:
        if hub in self.hubs:
            self.hubs.remove(hub)

    def want(self, *, work: bool, runs: bool) -> None:
        self._work = self._work or work
        self._runs = self._runs or runs

    def committed(self, announcements: Iterable[tuple[str, str]]) -> None:
        """What a transaction of this process announced, once it is committed."""
        if not self.hubs:
            return
        runs: list[str] = []
        wake = False
        at: float | None = None
        for channel, payload in announcements:
            if channel == STOP or (self._runs and channel in (RUN, RUN_END)):
                runs.append(payload)
            elif channel == WAKE and self._work:
                due = wake_due(payload)
                if not wake or (at is not None and (due is None or due < at)):
                    at = due
                wake = True
        if wake:
            self.notify_wake(at)
        if runs:
            self.notify_runs(runs)

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
