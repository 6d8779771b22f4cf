"""The error for a workflow name nobody registered, with the names it may have meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import WorkflowNotFound


def unknown_workflow(
    name: str, version: str | None, known: Iterable[str], verb: str = "registered"
) -> WorkflowNotFound:
    """WorkflowNotFound for ``name`` (``version``): "did you mean ...?" with the closest
    of the ``known`` names, in the message and in the details (``did_you_mean``), so
    every door shows it (the CLI's one line, HTTP's 404 body)."""
    what = f"{name!r} version {version!r}" if version else repr(name)
    names = sorted(set(known))
    close = [] if name in names else difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    message = f"no workflow {what} is {verb}"
    if close:
        message += f"; did you mean {' or '.join(close)}?"
    detail: dict[str, object] = {"field": "workflow", "error": "unknown workflow"}
    if close:
        detail["did_you_mean"] = close
    return WorkflowNotFound(message, details=[detail])
