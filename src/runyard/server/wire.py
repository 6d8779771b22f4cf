"""Small conversions between the wire and Runyard, shared by the routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator

from ..errors import InvalidInput

PAGINATION_HEADER = "X-Pagination-Next"


def _iso_time(value: Any) -> Any:
    """A time on the wire is ISO 8601: a bare number (``0.5``), which pydantic would read
    as seconds since the epoch, is refused, as the schema (``format: date-time``) says."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("expected an ISO 8601 date-time such as 2026-01-31T12:00:00Z")
    return value


#: A time query parameter: ISO 8601 only.
TimeQuery = Annotated[
    datetime | None,
    BeforeValidator(_iso_time),
    Query(description="ISO 8601 (a time without a zone is UTC)"),
]
#: Columns the database keeps as 32-bit integers.
INT32_MAX = 2**31 - 1
#: The earliest time that can be shown (0001-01-02 UTC), for derived bounds.
MIN_EPOCH = datetime(1, 1, 2, tzinfo=UTC).timestamp()


class ModelResponse(JSONResponse):
    """A JSON answer rendered by the model's own serializer (pydantic's, in Rust: a
    quarter of the cost of dumping to Python data and encoding that)."""

    def render(self, content: Any) -> bytes:
        if isinstance(content, BaseModel):
            return content.model_dump_json().encode()
        return super().render(content)


def json_response(
    model: BaseModel, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return ModelResponse(model, status_code=status, headers=headers)


def run_location(run_id: str) -> dict[str, str]:
    return {"Location": f"/v1/runs/{run_id}"}


def epoch(value: datetime | None, field: str, where: str = "query") -> float | None:
    """Seconds since the epoch; a time without a zone is UTC (as every time on the wire).
    A time that falls outside years 1-9999 once in UTC is refused (422): it could not be
    given back."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        seconds = value.astimezone(UTC).timestamp()
        datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput(
            f"{field} is out of range",
            details=[{"field": field, "in": where, "error": "out of range"}],
        ) from None
    return seconds


#: Half the resolution of a time on the wire (microseconds).
HALF_MICROSECOND = 0.5e-6


def bound(value: datetime | None, field: str) -> float | None:
    """A ``created_after``/``created_before`` bound as the database compares it. Stored
    times are finer than the microseconds shown, and a shown time is rounded to the
    nearest one: shifting the bound by half a microsecond makes "after the run's
    ``created_at``" include that very run, and "before" exclude it."""
    seconds = epoch(value, field)
    return None if seconds is None else seconds - HALF_MICROSECOND
