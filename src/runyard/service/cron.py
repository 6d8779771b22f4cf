"""A schedule's fire times, computed by croniter (never a parser of our own): 5 fields,
or 6 with a leading seconds field; read in an IANA timezone (:mod:`zoneinfo`).

DST, as croniter computes it in a timezone: a wall-clock time that a spring change skips
fires once, at the next valid time (02:30 on the night 02:00 becomes 03:00 fires at
03:00); a wall-clock time an autumn change repeats comes out of croniter twice, and only
its first occurrence fires here (a daily 02:30 fires once that night)."""

from __future__ import annotations

import functools
import hashlib
import threading
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from ..rules import invalid

#: How far croniter looks for a next match before saying an expression never fires.
_MAX_YEARS = 5
#: Next fire times a :class:`Cron` remembers (then it forgets them all).
_MEMO_MAX = 256


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA timezone ``name`` (422 naming ``field`` when unknown)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise invalid(field, "timezone must be an IANA timezone name", "not a timezone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid(
            field,
            f"unknown timezone {name!r}: give an IANA name such as 'Europe/Paris' or 'UTC'",
            "unknown timezone",
        ) from None


class Cron:
    """A cron expression in a timezone; :meth:`next_after` gives fire times."""

    def __init__(self, expr: str, timezone: str = "UTC", field: str = "cron") -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise invalid(field, "cron must be a cron expression", "empty")
        self.expr = " ".join(expr.split())
        self.tz = zone(timezone)
        n = len(self.expr.split())
        if not self.expr.startswith("@") and n not in (5, 6):
            raise invalid(
                field,
                f"cron {expr!r} has {n} fields: give 5 (minute hour day month weekday) or 6 "
                "(a leading seconds field)",
                "not 5 or 6 fields",
            )
        self.seconds = n == 6
        self._iter: croniter | None = None
        self._memo: dict[float, float] = {}
        self._lock = threading.Lock()
        try:
            if not croniter.is_valid(self.expr, second_at_beginning=self.seconds):
                raise CroniterBadCronError(self.expr)
            self.next_after(datetime.now(self.tz).timestamp())
        except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError):
            raise invalid(
                field,
                f"invalid cron expression {expr!r} (e.g. '0 9 * * 1-5', or '*/10 * * * * *' "
                "with seconds)",
                "invalid cron expression",
            ) from None
        except _NeverFires:
            raise invalid(field, f"cron expression {expr!r} never fires", "never fires") from None

    def next_after(self, ts: float) -> float:
        """The first fire time strictly after ``ts`` (epoch seconds)."""
        with self._lock:
            # Schedules of one expression firing at one time all ask for the same next
            # time: it is computed once (croniter takes ~0.1 ms).
            hit = self._memo.get(ts)
            if hit is not None:
                return hit
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            at = self._memo[ts] = self._compute(ts)
            return at

    def _compute(self, ts: float) -> float:
        """next_after, under the lock: one iterator, moved to each start (parsing the
        expression again would cost more than the search)."""
        start = datetime.fromtimestamp(ts, self.tz)
        it = self._iter
        if it is None:
            it = self._iter = croniter(
                self.expr,
                start,
                second_at_beginning=self.seconds,
                max_years_between_matches=_MAX_YEARS,
            )
        else:
            it.set_current(start, force=True)
        return self._next(it, ts)

    def _next(self, it: croniter, ts: float) -> float:
        for _ in range(10_000):
            try:
                nxt: datetime = it.get_next(datetime)
            except CroniterBadDateError:
                raise _NeverFires() from None
            at = nxt.timestamp()
            if at > ts and not self._repeated(at):
                return at
        raise _NeverFires()

    def _repeated(self, at: float) -> bool:
        """Whether ``at`` is the second occurrence of a wall-clock time (autumn change)."""
        wall = datetime.fromtimestamp(at, self.tz).replace(tzinfo=None)
        first = wall.replace(tzinfo=self.tz, fold=0).timestamp()
        return first < at

    def next_times(self, after: float, count: int) -> list[float]:
        out: list[float] = []
        at = after
        for _ in range(count):
            at = self.next_after(at)
            out.append(at)
        return out


@functools.lru_cache(maxsize=4096)
def cron_of(expr: str, timezone: str = "UTC") -> Cron:
    """:class:`Cron` of ``expr`` in ``timezone``, made once per process (the scheduler asks
    for it at every fire; checking an expression costs more than computing a time)."""
    return Cron(expr, timezone)


class _NeverFires(Exception):
    """No fire time within croniter's search horizon."""


def jitter_offset(schedule_id: str, fire_at: float, jitter: float) -> float:
    """The delay, in ``[0, jitter)``, of one fire: the same in every process."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{schedule_id}|{fire_at!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter
