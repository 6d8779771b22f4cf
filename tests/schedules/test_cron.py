"""The scheduler's fast paths of cron (one croniter per expression, moved to each start;
a next time remembered per start) answer as a fresh croniter does, DST included. No
storage: pure computation."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from runyard.service.cron import Cron, cron_of

CASES = [
    ("30 2 * * *", "Europe/Paris"),
    ("0 9 * * 1-5", "America/New_York"),
    ("*/7 * * * * *", "UTC"),
    ("15 */3 * * *", "Australia/Lord_Howe"),  # (a half-hour DST change)
    ("0 0 29 2 *", "UTC"),
]


def _fresh(expr: str, tz: str, ts: float) -> float:
    """The first time after ``ts`` from a new croniter, the repeated hour of an autumn
    change skipped as Cron documents."""
    zone = ZoneInfo(tz)
    it = croniter(
        expr, datetime.fromtimestamp(ts, zone), second_at_beginning=len(expr.split()) == 6
    )
    while True:
        at = it.get_next(datetime).timestamp()
        wall = datetime.fromtimestamp(at, zone).replace(tzinfo=None)
        if at > ts and wall.replace(tzinfo=zone, fold=0).timestamp() >= at:
            return float(at)


@pytest.mark.parametrize(("expr", "tz"), CASES)
def test_reused_and_remembered_next_times_match_a_fresh_croniter(expr: str, tz: str) -> None:
    rng = random.Random(20)
    cron = cron_of(expr, tz)
    assert cron_of(expr, tz) is cron  # (made once per process)
    starts = [rng.uniform(1.7e9, 1.9e9) for _ in range(150)]
    starts += [
        datetime(2026, m, d, h, tzinfo=ZoneInfo(tz)).timestamp()
        for m, d, h in [(3, 29, 1), (3, 29, 2), (10, 25, 1), (10, 25, 2), (4, 5, 1), (10, 4, 2)]
    ]
    for ts in starts + starts:  # (the second round is answered from memory)
        assert cron.next_after(ts) == _fresh(expr, tz, ts), (expr, tz, ts)
    # A chain of fires, as the scheduler walks it, matches a new Cron's.
    other, at, again = Cron(expr, tz), starts[0], starts[0]
    for _ in range(10):  # (Feb 29: 40 years)
        at, again = cron.next_after(at), other.next_after(again)
        assert at == again
