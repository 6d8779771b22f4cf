"""The event loop of Runyard's processes: the garbage collector tuned before it runs."""

from __future__ import annotations

import gc

from runyard import loop


async def _collector() -> tuple[int, int]:
    return gc.get_threshold()[0], gc.get_freeze_count()


def test_a_process_loop_freezes_what_exists_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        threshold, frozen = loop.run(_collector())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert threshold == loop.GC_GEN0_THRESHOLD > before[0]
    assert frozen > 1000  # the modules, the app, the test session itself
