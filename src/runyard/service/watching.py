"""Watching many runs at once, for live views of lists (the dashboard's runs list): the
runs this process hears changed, fed by the same change stream as :meth:`run_changes`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import RunNotFound
from ..models import Run
from .core import Core
from .reading import ReadMixin


@dataclass(eq=False)
class RunsChanged:
    """What this process heard since :meth:`take` last asked: ``event`` is set when
    something was heard; ``ids`` the runs named, ``everything`` when any run may have
    changed (a watcher reconnected, a poll saw a commit nobody announced)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    ids: set[str] = field(default_factory=set)
    everything: bool = False

    def heard(self, run_id: str | None) -> None:
        if run_id is None:
            self.everything = True
        else:
            self.ids.add(run_id)
        self.event.set()

    def take(self) -> tuple[set[str], bool]:
        """The runs heard of and whether any may have changed; both start over."""
        ids, everything = self.ids, self.everything
        self.ids, self.everything = set(), False
        self.event.clear()
        return ids, everything


class WatchMixin(ReadMixin):
    """Changes of any run, and several runs read at once."""

    core: Core

    @contextlib.contextmanager
    def any_run_changes(self) -> Iterator[RunsChanged]:
        """A :class:`RunsChanged` told of every run this process hears changed (status
        changes: a start, progress and outputs are not announced, so a view re-reads on a
        timeout too), for as long as the block runs."""
        hub = self.core.hub()
        changed = RunsChanged()
        hub.add_run_listener(changed.heard)
        try:
            yield changed
        finally:
            hub.remove_run_listener(changed.heard)

    async def runs_now(self, ids: Sequence[str]) -> list[Run]:
        """The runs with these ids as they are now (each read by its key), in the order
        given; an id no run has (purged) is left out."""
        out = []
        for run_id in dict.fromkeys(ids):
            with contextlib.suppress(RunNotFound):
                out.append(await self.get_run(run_id))
        return out
