"""What the routers share: the run-id path parameter, pagination headers, docs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Response

from ...errors import RunNotFound
from ...rules import ID_MAX, RUN_ID_RE
from ..errors import error_responses
from ..wire import PAGINATION_HEADER


def _run_id(
    run_id: Annotated[str, Path(description="The run's id", max_length=ID_MAX)],
) -> str:
    # An id that cannot have been created names no run: 404 without asking the database.
    if not RUN_ID_RE.match(run_id):
        raise RunNotFound(f"run {run_id!r} does not exist")
    return run_id


RunId = Annotated[str, Depends(_run_id)]

PAGINATION_DOC: dict[str, Any] = {
    PAGINATION_HEADER: {
        "description": "The cursor of the next page (absent on the last page)",
        "schema": {"type": "string"},
    }
}


def paginated(model: type[Any], description: str = "A page") -> dict[int | str, dict[str, Any]]:
    """A 200 answer that may carry ``X-Pagination-Next``."""
    return {200: {"model": model, "description": description, "headers": PAGINATION_DOC}}


def set_next(response: Response, cursor: str | None) -> None:
    if cursor is not None:
        response.headers[PAGINATION_HEADER] = cursor


NOT_FOUND = error_responses([404])
CONFLICT = error_responses([404, 409])
