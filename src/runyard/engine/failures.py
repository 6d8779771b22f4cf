"""What an execution makes of a failure: its stored record, whether the workflow's body
may run again, how attempts are counted and told."""

from __future__ import annotations

import traceback
from typing import Any

from .. import jsonutil
from ..errors import (
    InvalidInput,
    NonDeterminismError,
    NonRetryableError,
    RateLimited,
    RunTimeout,
    StepFailed,
)

#: What no new attempt of a workflow's body can change: told not to retry, a bad
#: argument or result, a replay that differs from the history, the run's deadline.
FINAL = (NonRetryableError, InvalidInput, NonDeterminismError, RunTimeout)
_FINAL_CODES = frozenset(cls.code for cls in FINAL)


def error_record(exc: BaseException, *, code: str | None = None) -> dict[str, Any]:
    """The JSON form of an error, as stored and returned."""
    record: dict[str, Any] = {
        "code": code or getattr(exc, "code", None) or "error",
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
    }
    details = getattr(exc, "details", None)
    if details is not None:
        try:
            jsonutil.dumps(details)
            record["details"] = details
        except InvalidInput:
            pass
    return record


def retryable_body_failure(exc: Exception) -> bool:
    """Whether the workflow's body may run again after raising ``exc`` (a step that
    failed for one of the reasons of :data:`FINAL` counts as that reason)."""
    if isinstance(exc, FINAL):
        return False
    if isinstance(exc, StepFailed) and isinstance(exc.details, dict):
        return exc.details.get("code") not in _FINAL_CODES
    return True


def tally(exc: Exception, failed: int, limited: int) -> tuple[int, int]:
    """The counts of failed attempts ``(not rate limited, rate limited)`` with one more,
    which raised ``exc``."""
    return (failed, limited + 1) if isinstance(exc, RateLimited) else (failed + 1, limited)


def attempts_text(attempts: int, in_all: int, body: int, most: int) -> str:
    """How often a step that failed was tried: ``3 attempts``, and where the workflow's
    body is retried ``3 attempts (in workflow attempt 2 of 3; 6 attempts in all)``: each
    attempt of the body (``body``, of at most ``most``) gives each step its own retries,
    ``in_all`` counts the step's attempts in every one."""
    text = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if most > 1 or body > 1:
        text += f" (in workflow attempt {body} of {max(most, body)}; {in_all} attempts in all)"
    return text
