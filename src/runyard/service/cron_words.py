"""A cron expression in words ("At 09:00, Monday through Friday"), by cron-descriptor:
what the HTTP API's schedules and the dashboard show beside the expression."""

from __future__ import annotations

import functools

from cron_descriptor import ExpressionDescriptor, FormatError, Options, WrongArgumentError

#: The macros croniter takes, as the expressions cron-descriptor reads.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@functools.lru_cache(maxsize=1024)
def describe_cron(cron: str) -> str | None:
    """The cron in words; None for an expression cron-descriptor cannot read (the
    schedule's own checks decide what is valid)."""
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        expr = cron.strip()
        text: str = ExpressionDescriptor(MACROS.get(expr.lower(), expr), options).get_description()
    except (FormatError, WrongArgumentError, ValueError, KeyError, IndexError):
        return None
    return text
