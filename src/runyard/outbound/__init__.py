"""The one guarded outbound HTTP client shared by callbacks and HTTP-target runs.

* :class:`OutboundPolicy` — the operator's allowed networks (``RUNYARD_OUTBOUND_ALLOW``),
  the response-body limit and the per-attempt timeout (15 s); ``OutboundPolicy.from_env()``.
* :func:`check_url` — the create-time check (raises ``InvalidInput`` naming the field);
  :func:`check_url_async` runs it with DNS off the event loop. A name that does not
  resolve yet is accepted (each send checks again).
* :func:`send` — one request: resolve once, check every address, connect to the checked
  address, no redirects, bounded time and body; raises ``OutboundRefused`` or
  ``OutboundFailed`` (both ``OutboundError``, in :mod:`runyard.errors`).
* :class:`Connections` — connections kept alive per checked destination (host, the
  addresses checked at this send, trust, policy), for ``send(..., connections=)``.
"""

from __future__ import annotations

from runyard.errors import OutboundError, OutboundFailed, OutboundRefused
from runyard.outbound.client import OutboundResponse, send
from runyard.outbound.guard import Resolver, check_url, check_url_async, parse_target, refusal
from runyard.outbound.policy import ALLOW_ENV, OutboundPolicy, parse_networks
from runyard.outbound.pool import Connections

__all__ = [
    "ALLOW_ENV",
    "Connections",
    "OutboundError",
    "OutboundFailed",
    "OutboundPolicy",
    "OutboundRefused",
    "OutboundResponse",
    "Resolver",
    "check_url",
    "check_url_async",
    "parse_networks",
    "parse_target",
    "refusal",
    "send",
]
