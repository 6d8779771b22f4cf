"""The runs list's filters, read from the query string of ``/ui/runs`` (and of its live
stream and its bulk actions): each bad value is an error naming its field, never a 500."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..models import RunStatus
from ..rules import RUN_ID_RE

#: Statuses in the order the filter shows them.
STATUSES = [s.value for s in RunStatus]
_TEXT_MAX = 200


@dataclass(frozen=True)
class RunsFilter:
    """What the runs list shows: a workflow, statuses, a schedule, a task, a creation time
    range (UTC); ``errors`` names each field that was given a bad value (it is then left
    out of the filter)."""

    workflow: str | None = None
    statuses: tuple[str, ...] = ()
    schedule_id: str | None = None
    task_id: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    #: The raw time texts, to show back in the form.
    after_text: str = ""
    before_text: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def service_args(self) -> dict[str, Any]:
        """The keyword arguments of ``Service.list_runs`` this filter gives."""
        return {
            "workflow": self.workflow,
            "status": list(self.statuses) or None,
            "schedule_id": self.schedule_id,
            "task_id": self.task_id,
            "created_after": self.created_after,
            "created_before": self.created_before,
        }

    def query_items(self) -> list[tuple[str, str]]:
        """The filter as query parameters (for links that keep it)."""
        items: list[tuple[str, str]] = []
        if self.workflow:
            items.append(("workflow", self.workflow))
        items += [("status", s) for s in self.statuses]
        if self.schedule_id:
            items.append(("schedule_id", self.schedule_id))
        if self.task_id:
            items.append(("task_id", self.task_id))
        if self.after_text:
            items.append(("created_after", self.after_text))
        if self.before_text:
            items.append(("created_before", self.before_text))
        return items

    def query(self, **more: str) -> str:
        """The filter (and ``more``) as a query string, without the ``?``."""
        return urllib.parse.urlencode([*self.query_items(), *more.items()])

    @property
    def active(self) -> bool:
        return bool(self.query_items())


def parse_time(text: str) -> float:
    """A date and time (ISO 8601; without a zone it is UTC, as the form says) as epoch
    seconds; ValueError if it is not one."""
    when = dt.datetime.fromisoformat(text.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _text(params: Mapping[str, str], name: str, errors: dict[str, str]) -> str | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if len(value) > _TEXT_MAX or "\x00" in value:
        errors[name] = f"{name} is at most {_TEXT_MAX} characters of text"
        return None
    return value


def parse_filter(params: Any) -> RunsFilter:
    """The filter of a query string (Starlette's ``QueryParams`` or a form)."""
    errors: dict[str, str] = {}
    statuses: list[str] = []
    for raw in params.getlist("status"):
        s = str(raw).strip().upper()
        if not s:
            continue
        if s not in STATUSES:
            errors["status"] = f"status: unknown status {raw!r} (one of {', '.join(STATUSES)})"
        elif s not in statuses:
            statuses.append(s)
    times: dict[str, float | None] = {}
    texts: dict[str, str] = {}
    for name in ("created_after", "created_before"):
        text = str(params.get(name) or "").strip()
        times[name] = None
        if not text:
            continue
        try:
            times[name] = parse_time(text)
            texts[name] = text
        except ValueError:
            errors[name] = f"{name}: {text[:40]!r} is not a date and time (2026-01-31T14:00)"
    return RunsFilter(
        workflow=_text(params, "workflow", errors),
        statuses=tuple(statuses),
        schedule_id=_text(params, "schedule_id", errors),
        task_id=_text(params, "task_id", errors),
        created_after=times["created_after"],
        created_before=times["created_before"],
        after_text=texts.get("created_after", ""),
        before_text=texts.get("created_before", ""),
        errors=errors,
    )


def valid_run_id(text: str) -> bool:
    return bool(RUN_ID_RE.match(text))
