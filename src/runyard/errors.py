"""The one exception hierarchy of Runyard.

Every error a client can see derives from :class:`RunyardError` and carries a stable
``code`` and an ``http_status``; the server turns any of them into the JSON error shape
``{"error": {"code", "message", "details"}}`` and the SDK raises the same classes back.

::

    RunyardError
    ├── Unauthorized              401  no API key, or an unknown or revoked one
    ├── Forbidden                 403  the key's scope does not allow this
    ├── InvalidInput              422  a field is missing, of the wrong type, or not JSON
    ├── NotFound                  404
    │   ├── RunNotFound
    │   └── WorkflowNotFound
    ├── IllegalTransition         409  e.g. resume of a SUCCEEDED run
    │   └── RunIdConflict              a run id reused with another request
    ├── PayloadTooLarge           413
    ├── UnsupportedMediaType      415  a body that is not sent as JSON
    ├── CapacityExceeded          429
    ├── StoreUnavailable          503  the database cannot be reached right now
    ├── StorageFull               507  the database's disk is full (writes only)
    ├── ServerUnreachable         503  (SDK) the Runyard server cannot be reached
    ├── OutboundError             502  an outbound call (callback, HTTP target) failed
    │   ├── OutboundRefused            the URL's address is refused by the outbound guard
    │   └── OutboundFailed             connect, timeout, too large a response, protocol
    ├── WorkflowError                  raised inside workflows
    │   ├── NonRetryableError          a step failure that must not be retried
    │   ├── RateLimited                retry the step after ``retry_after`` seconds
    │   ├── StepFailed                 a step failed after its retries (replayed as such)
    │   ├── StepTimeout
    │   ├── RunTimeout
    │   └── NonDeterminismError        replay met a different step than the one recorded
    ├── RunFailed                      the run ended without a result (FAILED, CANCELED, ...)
    └── Timeout                        waiting for a run's result took too long

Control-flow signals that user code must not swallow (suspension, cancellation, loss of
a lease) derive from ``BaseException`` and live in ``runyard.engine.signals``.
"""

from __future__ import annotations

from typing import Any


class RunyardError(Exception):
    """Runyard failed."""

    code = "runyard_error"
    http_status = 500

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or (type(self).__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The body of the JSON error shape."""
        return {"code": self.code, "message": self.message, "details": self.details}


class Unauthorized(RunyardError):
    """An API key is required: send it as "x-api-key: <key>" or "Authorization: Bearer <key>"."""

    code = "unauthorized"
    http_status = 401


class Forbidden(RunyardError):
    """The API key's scope does not allow this."""

    code = "forbidden"
    http_status = 403


class ServerUnreachable(RunyardError):
    """The Runyard server cannot be reached."""

    code = "server_unreachable"
    http_status = 503


class InvalidInput(RunyardError):
    """The request is not valid."""

    code = "invalid_input"
    http_status = 422


class NotFound(RunyardError):
    """Not found."""

    code = "not_found"
    http_status = 404


class RunNotFound(NotFound):
    """No run has this id."""

    code = "run_not_found"


class WorkflowNotFound(NotFound):
    """No workflow of this name is registered."""

    code = "workflow_not_found"


class IllegalTransition(RunyardError):
    """The run cannot make this transition from its current status."""

    code = "illegal_transition"
    http_status = 409


class RunIdConflict(IllegalTransition):
    """A run with this id exists, started by another request (another workflow, input,
    mode or option); ``details`` names each field that differs. The same request again
    answers with the run instead."""

    code = "run_id_conflict"


class PayloadTooLarge(RunyardError):
    """The payload is larger than the configured limit."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(RunyardError):
    """The body must be JSON, sent with the header "Content-Type: application/json"."""

    code = "unsupported_media_type"
    http_status = 415


class CapacityExceeded(RunyardError):
    """No capacity is left right now; retry later."""

    code = "capacity_exceeded"
    http_status = 429

    def __init__(
        self, message: str | None = None, *, retry_after: float = 1.0, details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class StoreUnavailable(RunyardError):
    """The database cannot be reached right now."""

    code = "store_unavailable"
    http_status = 503


class StorageFull(RunyardError):
    """The database's disk is full: nothing was written; retry once space is freed."""

    code = "storage_full"
    http_status = 507


class Timeout(RunyardError):
    """The run did not finish within the time given."""

    code = "wait_timeout"
    http_status = 408


class RunFailed(RunyardError):
    """The run ended without a result."""

    code = "run_failed"
    http_status = 409

    def __init__(
        self, message: str | None = None, *, status: str = "FAILED", details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.status = status


class OutboundError(RunyardError):
    """An outbound HTTP call (a callback or an HTTP-target run) failed."""

    code = "outbound_error"
    http_status = 502


class OutboundRefused(OutboundError):
    """The outbound guard refused the URL's address (loopback, private, link-local,
    metadata, ...; checked again at send time because a DNS answer may change)."""

    code = "outbound_refused"


class OutboundFailed(OutboundError):
    """The outbound call did not complete: connection refused, timeout, a response body
    over the limit, or a protocol error."""

    code = "outbound_failed"


class WorkflowError(RunyardError):
    """A workflow failed."""

    code = "workflow_error"


class NonRetryableError(WorkflowError):
    """A step failed in a way that retrying cannot fix."""

    code = "non_retryable"


class RateLimited(WorkflowError):
    """An upstream asked us to slow down; the step is retried after retry_after seconds."""

    code = "rate_limited"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = float(retry_after)


class StepFailed(WorkflowError):
    """A step failed after its retries."""

    code = "step_failed"


class StepTimeout(WorkflowError):
    """A step took longer than its timeout."""

    code = "step_timeout"


class RunTimeout(WorkflowError):
    """The run took longer than its timeout."""

    code = "timeout"


class NonDeterminismError(WorkflowError):
    """On replay the workflow reached a different step than the one recorded."""

    code = "non_determinism"


__all__ = [
    "CapacityExceeded",
    "Forbidden",
    "IllegalTransition",
    "InvalidInput",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFound",
    "OutboundError",
    "OutboundFailed",
    "OutboundRefused",
    "PayloadTooLarge",
    "RateLimited",
    "RunFailed",
    "RunIdConflict",
    "RunNotFound",
    "RunTimeout",
    "RunyardError",
    "ServerUnreachable",
    "StepFailed",
    "StepTimeout",
    "StorageFull",
    "StoreUnavailable",
    "Timeout",
    "Unauthorized",
    "UnsupportedMediaType",
    "WorkflowError",
    "WorkflowNotFound",
]
