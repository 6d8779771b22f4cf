"""HTTP-target runs: what a run that calls a URL instead of a Python workflow is asked to
send (``POST /v1/runs`` with ``url``), shared by the server, the service, the engine and
the SDK.

Such a run is a run of the built-in workflow :data:`HTTP_WORKFLOW` (``http``), which
every worker serves unless told not to (``RUNYARD_HTTP_TARGETS=0``): its input is the
:class:`HttpTarget` object, so flow control, priorities, timeouts, durable retries,
cancel, fork and callbacks work as for any run. The shape follows what Upstash QStash
users send (destination, method, forwarded headers, body, per-request timeout), as one
JSON object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The reserved name of the built-in workflow that runs HTTP targets.
HTTP_WORKFLOW = "http"
#: Set to 0 to keep a worker from serving :data:`HTTP_WORKFLOW`.
HTTP_TARGETS_ENV = "RUNYARD_HTTP_TARGETS"
#: Retries of an HTTP target when the trigger gives none (as QStash's default).
HTTP_DEFAULT_RETRIES = 3
#: The default and the longest time one request may take, seconds.
HTTP_DEFAULT_TIMEOUT_S = 30.0
HTTP_TIMEOUT_MAX_S = 300.0
URL_MAX = 2048


class HttpTarget(BaseModel):
    """``url`` of ``POST /v1/runs``: the request the run sends. ``body``: a string is sent
    as it is (``text/plain; charset=utf-8`` unless ``headers`` name a content type); any
    other JSON value is sent as JSON (``application/json``); null sends no body."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=URL_MAX,
        description="http:// or https:// URL to call; refused (422) if it reaches a "
        "loopback, private, link-local or metadata address unless the operator allows it "
        "(RUNYARD_OUTBOUND_ALLOW)",
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "POST"
    headers: dict[str, str] = Field(
        default_factory=dict, max_length=100, description="Headers sent with the request"
    )
    body: Any = Field(default=None, description="Text sent as is, or a JSON value")
    timeout: float = Field(
        default=HTTP_DEFAULT_TIMEOUT_S,
        gt=0,
        le=HTTP_TIMEOUT_MAX_S,
        allow_inf_nan=False,
        description="Seconds one request may take (connect to last byte)",
    )


def target_url(workflow: str, options: dict[str, Any]) -> str | None:
    """The URL a run calls (kept in its options when it is an HTTP target), else None."""
    if workflow != HTTP_WORKFLOW:
        return None
    url = options.get("target_url")
    return url if isinstance(url, str) else None


def target_problems(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The rules between ``workflow``, ``url`` and the input fields of a trigger body,
    as ``(field, message, error)``: exactly one of ``workflow`` and ``url``; with
    ``url`` the request body is ``url.body``, so no ``input``/``inputs``."""
    has_wf, has_url = body.get("workflow") is not None, body.get("url") is not None
    if has_wf == has_url:
        error = "both given" if has_wf else "neither given"
        message = "give exactly one of workflow (a Python workflow) and url (an HTTP target)"
        return [("workflow", message, error), ("url", message, error)]
    if has_url:
        return [
            (name, f"{name} is not taken with url: send the request body as url.body", "with url")
            for name in ("input", "inputs")
            if body.get(name) is not None
        ]
    return []
