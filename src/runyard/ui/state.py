"""What the dashboard holds (on ``app.state.ui``; no module-level state)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import jinja2
from fastapi import Request

from ..service import Service


@dataclass(eq=False)
class UiState:
    """The service the pages call, the server's own admin key (``RUNYARD_API_KEY``, which
    signs in like an issued key), the templates, and the version in static URLs."""

    service: Service
    server_key: str | None
    templates: jinja2.Environment
    static_version: str
    #: Set when the server begins to stop: live streams end at once.
    stopping: asyncio.Event | None = None
    #: A worker counts as live when it heartbeated this recently (RUNYARD_WORKER_SEEN_S).
    worker_seen_s: float = 30.0
    #: Whether ``server_key`` is a key issued with ``runyard keys create`` (then only its
    #: stored record counts); None until first asked.
    server_key_issued: bool | None = None


def ui_state(request: Request) -> UiState:
    state = request.app.state.ui
    assert isinstance(state, UiState), "mount_ui was not called"
    return state
