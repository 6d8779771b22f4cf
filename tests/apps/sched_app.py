"""Workflows of the scheduler-process tests (tests/schedules/test_core_processes.py):
each worker process started with this app also runs the scheduler."""

from __future__ import annotations

import time

from runyard import Context, Runyard

yard = Runyard()


@yard.workflow
async def stamp(ctx: Context) -> float:
    """When it ran."""
    return time.time()
