"""The Python SDK of the Runyard HTTP API.

:class:`Client` (blocking) and :class:`AsyncClient` (asyncio) offer the same methods;
both answer with the wire models of :mod:`runyard.schemas` and raise the classes of
:mod:`runyard.errors` from the server's error body::

    RunyardError                    runyard.errors
    ├── InvalidInput (422), NotFound (404: RunNotFound, WorkflowNotFound),
    │   IllegalTransition (409), PayloadTooLarge (413), CapacityExceeded (429),
    │   StoreUnavailable (503), RunFailed, Timeout, ...
    ├── Unauthorized (401), Forbidden (403)     unless runyard.errors defines them
    ├── ServerUnreachable                       the server could not be reached
    └── WebhookVerificationError                a callback failed verification

The pattern a client app needs::

    run = client.start_run("enrich_companies", {"domain": "acme.com"})
    db.save(run.id)
    ...                                         # restart
    result = Client().result(db.load(), timeout=600)
"""

from ..errors import Forbidden, ServerUnreachable, Unauthorized
from ._sse import RunEvent
from ._types import (
    UNSET,
    ExecuteOptions,
    RunFilters,
    ScheduleChanges,
    ScheduleOptions,
    StartOptions,
)
from .aio import AsyncClient
from .sync import Client
from .webhooks import WebhookVerificationError, WebhookVerifier, verify_webhook

__all__ = [
    "UNSET",
    "AsyncClient",
    "Client",
    "ExecuteOptions",
    "Forbidden",
    "RunEvent",
    "RunFilters",
    "ScheduleChanges",
    "ScheduleOptions",
    "ServerUnreachable",
    "StartOptions",
    "Unauthorized",
    "WebhookVerificationError",
    "WebhookVerifier",
    "verify_webhook",
]
