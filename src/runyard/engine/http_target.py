"""The built-in workflow ``http`` that runs HTTP targets (``POST /v1/runs`` with ``url``).

One attempt of the workflow's body sends the request once through the guarded outbound
client (:mod:`runyard.outbound`, which checks the address again at send time). What the
response means:

* 2xx (and 1xx/3xx: no redirect is followed) -> the run's result
  ``{status, headers, body}``, the body parsed as JSON when the response says it is JSON
  (else text);
* 429 -> :class:`~runyard.RateLimited` after its ``Retry-After`` (seconds or an HTTP
  date; 1 s when absent), which does not spend a retry;
* 5xx, a connection error or a timeout -> a retryable failure: the engine's retry policy
  backs off (durably: the item is handed back until the backoff is over);
* any other 4xx, or an address the guard refuses -> a non-retryable failure at once.

A failure's error carries the last response (``details.response``), so a run FAILED
after its retries shows what the target answered last.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

from .. import jsonutil
from ..errors import NonRetryableError, OutboundFailed, OutboundRefused, RateLimited, WorkflowError
from ..http_target import HTTP_DEFAULT_RETRIES, HTTP_WORKFLOW, HttpTarget
from ..outbound import Connections, OutboundPolicy, OutboundResponse, send
from .context import Context
from .registry import RetryPolicy, WorkflowDef, make_definition

#: Backoff of an HTTP target's retries when the trigger gives no ``retries`` (1 s doubling
#: up to 10 min; a trigger's ``retries`` keeps the engine's default backoff).
HTTP_RETRY_POLICY = RetryPolicy(
    max_attempts=HTTP_DEFAULT_RETRIES + 1, backoff_s=1.0, max_backoff_s=600.0
)
#: The longest Retry-After honoured, seconds (a longer one waits this long).
RETRY_AFTER_MAX_S = 3600.0


class HttpTargetFailed(WorkflowError):
    """The target answered 5xx or could not be reached; retried with backoff."""

    code = "http_target_failed"


class HttpTargetRejected(NonRetryableError):
    """The target answered a 4xx other than 429, or the guard refused its address."""

    code = "http_target_rejected"


def response_record(response: OutboundResponse) -> dict[str, Any]:
    """``{status, headers, body}``: the body as JSON when the response is JSON (and
    parses), else as text (undecodable bytes replaced)."""
    text = response.body.decode("utf-8", errors="replace")
    body: Any = text
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    return {"status": response.status, "headers": response.headers, "body": body}


def retry_after_s(value: str | None, now: float | None = None) -> float:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), at
    least 0 and at most :data:`RETRY_AFTER_MAX_S`; 1 when absent or unreadable."""
    if not value:
        return 1.0
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 1.0
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return 1.0
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def request_body(target: HttpTarget) -> tuple[bytes | None, dict[str, str]]:
    """The bytes sent and the headers with a content type set for them when none is."""
    headers = dict(target.headers)
    if target.body is None:
        return None, headers
    named = any(k.lower() == "content-type" for k in headers)
    if isinstance(target.body, str):
        if not named:
            headers["content-type"] = "text/plain; charset=utf-8"
        return target.body.encode(), headers
    if not named:
        headers["content-type"] = "application/json"
    return jsonutil.dumps(target.body).encode(), headers


def http_workflow(policy: OutboundPolicy, connections: Connections | None = None) -> WorkflowDef:
    """The ``http`` workflow, sending through ``policy``; ``connections`` kept alive
    between runs (the worker's, closed by it)."""

    async def http(ctx: Context, target: HttpTarget) -> dict[str, Any]:
        """Call a URL (an HTTP-target run): the result is the response, {status, headers,
        body}."""
        body, headers = request_body(target)
        headers = ctx.trace_headers(headers)  # the run's trace goes on to the target
        try:
            response = await send(
                target.method,
                target.url,
                headers=headers,
                body=body,
                policy=policy,
                timeout_s=target.timeout,
                connections=connections,
            )
        except OutboundRefused as exc:
            raise HttpTargetRejected(str(exc), details={"url": target.url}) from None
        except OutboundFailed as exc:
            raise HttpTargetFailed(str(exc), details={"url": target.url}) from None
        record = response_record(response)
        status = response.status
        details = {"url": target.url, "response": record}
        if status == 429:
            limited = RateLimited(
                f"{target.url} answered 429",
                retry_after=retry_after_s(response.headers.get("retry-after")),
            )
            limited.details = details
            raise limited
        if status >= 500:
            raise HttpTargetFailed(f"{target.url} answered {status}", details=details)
        if status >= 400:
            raise HttpTargetRejected(f"{target.url} answered {status}", details=details)
        return record

    return make_definition(
        http,
        name=HTTP_WORKFLOW,
        version="1",
        description="Built-in: call a URL (HTTP-target runs, POST /v1/runs with url)",
        input_type=HttpTarget,
        retries=HTTP_RETRY_POLICY,
        timeout_s=None,
        flow_control=None,
        max_recovery_attempts=5,
        on_failure=None,
        priority=0,
    )
