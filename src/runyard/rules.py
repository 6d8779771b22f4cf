"""The rules a run's identifiers and options obey, defined once: the service layer checks
them, the wire models (:mod:`runyard.schemas`) and the engine take their bounds from here."""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

from .errors import InvalidInput

#: What an INTEGER column holds on PostgreSQL (counts, limits and rates are stored so).
INT32_MAX = 2**31 - 1
#: A run's priority is an integer in [-PRIORITY_MAX, PRIORITY_MAX]; higher runs first.
PRIORITY_MAX = 1000
#: Retries a run may ask for.
RETRIES_MAX = 100
#: Run ids (and task, schedule and flow-control keys) are at most this long.
ID_MAX = 200
#: A run id: letters, digits and ``. _ : @ + = -``, starting with a letter or digit.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=\-]{0,199}$")
#: An event id: 1 to EVENT_ID_MAX printable characters.
EVENT_ID_MAX = 300
#: How deep a JSON payload that is stored (run input, custom_data, task input, event
#: data, outputs) may nest: 128 arrays or objects one inside the other. Deeper values
#: could not be given back (the answer's serializer stops near 255 levels, the JSON
#: decoder near 1,000), so they are refused on the way in (422 naming the limit).
JSON_DEPTH_MAX = 128
#: How a run is started: answered at once (async) or once it ends (live).
MODES = ("async", "live")
#: How an incremental run hands its outputs over across iterations.
SYNC_MODES = ("full", "incremental")
#: What a schedule's fire does while its previous run has not ended (skip: the default).
OVERLAP_POLICIES = ("skip", "buffer_one", "buffer_all", "cancel_other", "allow_all")
#: A schedule's catch-up window when not given, and its least (seconds): after downtime,
#: missed fires younger than the window still run, older ones are recorded as missed.
CATCHUP_DEFAULT_S = 60.0
CATCHUP_MIN_S = 10.0
#: At most this many fires per backfill; at most this many fires buffered per schedule.
BACKFILL_MAX_FIRES = 1000
BUFFER_MAX_FIRES = 1000
#: A schedule's id: the run-id alphabet, short enough for its runs' ids to fit.
SCHEDULE_ID_MAX = 100


def invalid(field: str, message: str, error: str) -> InvalidInput:
    """The error for one bad field (422 over HTTP), naming it."""
    return InvalidInput(message, details=[{"field": field, "error": error}])


def input_choice_problems(
    *, input_given: bool, inputs_given: bool, custom_data_given: bool
) -> list[tuple[str, str, str]]:
    """The rules between a trigger's input fields, as ``(field, message, error)`` for
    each one broken: ``input`` or ``inputs``, not both; with ``inputs``, each entry
    carries its own ``custom_data``. (Checked by the service for every trigger, and by
    the HTTP API's body check, so that one 422 names these with the other bad fields.)"""
    found: list[tuple[str, str, str]] = []
    if input_given and inputs_given:
        found.append(("inputs", "give input or inputs, not both", "both input and inputs"))
    if inputs_given and custom_data_given:
        found.append(
            (
                "custom_data",
                "with inputs, give custom_data inside each entry",
                "not allowed with inputs",
            )
        )
    return found


def problems_error(problems: list[tuple[str, str, str]]) -> InvalidInput:
    """One error naming every ``(field, message, error)`` of ``problems``."""
    return InvalidInput(
        "; ".join(message for _, message, _ in problems),
        details=[{"field": field, "error": error} for field, _, error in problems],
    )


class _RandomHex:
    """Random hex digits from the operating system's generator, read 4 KiB at a time:
    ``os.urandom`` per id released and retook the GIL on every request, and in a busy
    server retaking it waited for the database thread (measured with py-spy: 6 % of
    the server's samples at 1,800 POST /v1/runs a second)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._hex = ""
        self._at = 0
        # A forked child must not go on with its parent's digits (same ids, same ms).
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._hex, self._at = "", 0

    def take(self, digits: int) -> str:
        with self._lock:
            if self._at + digits > len(self._hex):
                self._hex, self._at = os.urandom(self._size).hex(), 0
            self._at += digits
            return self._hex[self._at - digits : self._at]


_random_hex = _RandomHex()


def generate_run_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return f"run_{int(time.time() * 1000):012x}{_random_hex.take(12)}"


def check_run_id(run_id: Any, field: str = "run_id") -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise invalid(
            field,
            f"{field} must be 1-{ID_MAX} characters: letters, digits and . _ : @ + = - "
            "(starting with a letter or digit)",
            "invalid run id",
        )
    return run_id


def check_event_id(event_id: Any) -> str:
    if (
        not isinstance(event_id, str)
        or not event_id
        or len(event_id) > EVENT_ID_MAX
        or any(ord(ch) < 32 for ch in event_id)
    ):
        raise invalid(
            "event_id",
            f"event_id must be 1-{EVENT_ID_MAX} printable characters",
            "invalid event id",
        )
    return event_id


def check_int(value: Any, field: str, low: int, high: int) -> int | None:
    """``value`` if it is None or an integer in [low, high], else the error naming
    ``field``."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
    ):
        raise invalid(field, f"{field} must be an integer from {low} to {high}", "out of range")
    return value


def check_choice(value: Any, field: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise invalid(field, f"{field} must be one of {', '.join(choices)}", f"unknown {field}")
