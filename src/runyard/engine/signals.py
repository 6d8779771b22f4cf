"""Control flow that user code must not swallow: derived from ``BaseException``, so an
``except Exception:`` in a workflow lets them pass."""

from __future__ import annotations


class EngineSignal(BaseException):
    """Base of the engine's control-flow signals."""


class Suspend(EngineSignal):
    """Hand the item back until ``due_at`` (a durable sleep, a retry backoff, a pause)."""

    def __init__(self, due_at: float, waiting_for: str | None) -> None:
        super().__init__(waiting_for)
        self.due_at = due_at
        self.waiting_for = waiting_for


class Suspended(EngineSignal):
    """The item was already handed back in the same transaction (an event wait)."""


class Fenced(EngineSignal):
    """Another worker owns the item now: stop, write nothing more."""


class Canceled(EngineSignal):
    """The run was canceled by a client."""
