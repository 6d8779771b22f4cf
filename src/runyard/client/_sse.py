"""Server-Sent Events of ``GET /v1/runs/{id}/events``, decoded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One Server-Sent Event of ``GET /v1/runs/{id}/events``: ``event`` is ``status``,
    ``progress``, ``output`` or ``end``; ``data`` is its JSON payload, decoded."""

    event: str
    data: Any
    id: str | None = None


class SSEDecoder:
    """Lines of a ``text/event-stream`` in, :class:`RunEvent` out (per the WHATWG rules:
    ``event``, ``data`` (joined by newlines), ``id``; comments and ``retry`` ignored)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_event_id: str | None = None

    def feed(self, line: str) -> RunEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> RunEvent | None:
        if not self._data and not self._event:
            return None
        text = "\n".join(self._data)
        try:
            data: Any = json.loads(text) if text else None
        except ValueError:
            data = text
        if self._id is not None:
            self.last_event_id = self._id
        event = RunEvent(event=self._event or "message", data=data, id=self._id)
        self._event, self._data, self._id = "", [], None
        return event
