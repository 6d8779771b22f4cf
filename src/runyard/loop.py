"""The event loop of Runyard's processes (server, worker, ``runyard dev``)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Allocations between two collections of the youngest generation (Python's default is
#: 700). A trigger allocates a few thousand objects, none of them in a cycle that
#: outlives it; collecting every 700 cost the server an eighth of its CPU per request.
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Set up the cyclic garbage collector for a long-running process: what exists at
    start (modules, the app, the workflows) is frozen out of every collection, and the
    youngest generation is collected less often. Reference counting frees everything
    not in a cycle at once either way; cycles are still collected, a little later."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop where it is installed (not on Windows): the same
    asyncio API with a faster loop and socket layer; the collector tuned first
    (:func:`tune_gc`)."""
    tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(main)
    return uvloop.run(main)
