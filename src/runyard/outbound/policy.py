"""What the outbound guard lets through: the operator's allowed networks and the bounds.

``RUNYARD_OUTBOUND_ALLOW`` lists networks (comma-separated CIDRs or single addresses, e.g.
``127.0.0.0/8,::1``) that outbound calls may reach although the guard refuses them by
default (loopback, private, link-local, metadata, ...). It is empty by default: only
public addresses are reached.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from runyard.config import env_number

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The environment variable naming the networks the guard lets through.
ALLOW_ENV = "RUNYARD_OUTBOUND_ALLOW"
#: Each attempt's whole time (connect, send, read), seconds (RUNYARD_OUTBOUND_TIMEOUT_S).
DEFAULT_TIMEOUT_S = 15.0
#: The most response-body bytes read; a longer body fails the call (RUNYARD_OUTBOUND_MAX_BODY).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def parse_networks(raw: str, *, field: str = ALLOW_ENV) -> tuple[IPNetwork, ...]:
    """The networks in a comma-separated list of CIDRs or addresses (blank items are skipped).

    Raises ValueError naming ``field`` and the item that is not a network.
    """
    networks: list[IPNetwork] = []
    for item in raw.split(","):
        text = item.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{field}: {text!r} is not a network; expected CIDRs or addresses separated "
                "by commas, e.g. 127.0.0.0/8,::1"
            ) from None
    return tuple(networks)


@dataclass(frozen=True)
class OutboundPolicy:
    """The rules every outbound call follows.

    ``allow``: networks reached although refused by default (empty: public addresses only).
    ``max_body_bytes``: a response body longer than this fails the call (OutboundFailed).
    ``timeout_s``: one attempt's whole time, connect to last body byte.
    """

    allow: tuple[IPNetwork, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls) -> OutboundPolicy:
        """The policy from ``RUNYARD_OUTBOUND_ALLOW``, ``RUNYARD_OUTBOUND_MAX_BODY`` and
        ``RUNYARD_OUTBOUND_TIMEOUT_S`` (defaults: nothing extra allowed, 1 MiB, 15 s)."""
        return cls(
            allow=parse_networks(os.environ.get(ALLOW_ENV, "")),
            max_body_bytes=int(
                env_number("RUNYARD_OUTBOUND_MAX_BODY", DEFAULT_MAX_BODY_BYTES, integer=True)
            ),
            timeout_s=env_number("RUNYARD_OUTBOUND_TIMEOUT_S", DEFAULT_TIMEOUT_S),
        )

    def allows(self, address: IPAddress) -> bool:
        """Whether ``address`` lies inside one of the operator's allowed networks."""
        return any(address.version == net.version and address in net for net in self.allow)
