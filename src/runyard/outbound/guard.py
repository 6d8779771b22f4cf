"""The outbound-URL guard: which URLs and addresses an outbound call may reach.

A URL passes when it is ``http`` or ``https``, carries no credentials, and every address
its host stands for is allowed. An address is refused when it is loopback, private,
link-local, carrier-grade NAT, multicast, reserved, unspecified, IPv6 unique-local, or
otherwise not globally reachable; when it embeds such an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4, Teredo); or when it is
a cloud metadata address — unless it lies inside a network the operator allows
(``RUNYARD_OUTBOUND_ALLOW``).

Hosts are read in every spelling a client library or resolver might accept: decimal
(``2130706433``), octal (``0177.0.0.1``), hex (``0x7f.1``), short forms (``127.1``) with the
``inet_aton`` rules, trailing dots, percent-encoding, IDN (UTS #46 mapping, so full-width
digits become ASCII ones), bracketed IPv6 with a zone id. A host whose last label is a
number but which is no valid IPv4 address (``1.2.3.4.5``, ``0x100000000``) is refused as
invalid. Special names are not asked of DNS: ``localhost`` and ``*.localhost`` stand for
loopback, the metadata names (``metadata.google.internal`` ...) for the metadata address.

At create time (:func:`check_url`) a name that does not resolve (yet) is ACCEPTED: DNS may
be set up after the callback is registered, and every send resolves and checks again. A
name that resolves now to a refused address is refused.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import idna

from runyard.errors import InvalidInput, OutboundFailed, OutboundRefused
from runyard.outbound.policy import IPAddress, OutboundPolicy

#: ``resolver(host, port)`` -> the host's addresses (as text); the default asks the
#: system resolver (getaddrinfo). Raises OSError when the name does not resolve.
Resolver = Callable[[str, int], Sequence[str]]

#: Cloud metadata endpoints (AWS, GCP, Azure, Alibaba, Oracle, AWS ECS, AWS IPv6).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.123",
        "168.63.129.16",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)
_METADATA_V4 = ipaddress.IPv4Address("169.254.169.254")
#: Names that are never asked of DNS, and what they stand for.
SPECIAL_NAMES: dict[str, tuple[IPAddress, ...]] = {
    "localhost": (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")),
    "metadata": (_METADATA_V4,),
    "metadata.google.internal": (_METADATA_V4,),
    "metadata.goog": (_METADATA_V4,),
    "instance-data": (_METADATA_V4,),
    "instance-data.ec2.internal": (_METADATA_V4,),
}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPAT = ipaddress.IPv6Network("::/96")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NUMBER_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


@dataclass(frozen=True)
class Target:
    """A checked URL's parts: scheme, the host as written (IDN in ASCII, no trailing dot),
    the port, and the literal address when the host is one (None for a name)."""

    scheme: str
    host: str
    port: int
    literal: IPAddress | None


def refusal(address: IPAddress, policy: OutboundPolicy) -> str | None:
    """Why ``address`` is refused under ``policy``, or None when it may be reached."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        why = refusal(address.ipv4_mapped, policy)
        return None if why is None else f"IPv4-mapped {address.ipv4_mapped} ({why})"
    if policy.allows(address):
        return None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address):
        if address in _CGNAT:
            return "carrier-grade NAT"
        if address.is_private:
            return "private"
        if address.is_reserved or not address.is_global:
            return "reserved"
        return None
    for name, inner in _embedded_v4(address):
        why = refusal(inner, policy)
        if why is not None:
            return f"{name} of {inner} ({why})"
    if address in _NAT64:
        return None  # the well-known NAT64 prefix of an allowed IPv4 address
    if address in _NAT64_LOCAL:
        return "NAT64 local-use"
    if address in ipaddress.IPv6Network("fc00::/7"):
        return "unique-local"
    if address.is_site_local:
        return "site-local"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries (compatible, NAT64, 6to4, Teredo)."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPAT:
        found.append(("IPv4-compatible", low32))
    if address in _NAT64 or address in _NAT64_LOCAL:
        found.append(("NAT64", low32))
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo
        found += [("Teredo server", server), ("Teredo client", client)]
    return found


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host of numeric labels spells with the ``inet_aton`` rules
    (``127.1``, ``0x7f.1``, ``0177.0.0.1``, ``2130706433``), None when it is a name.

    Raises ValueError when the last label is a number yet the whole is no IPv4 address.
    """
    labels = host.split(".")
    if not _NUMBER_LABEL.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMBER_LABEL.match(label) for label in labels):
        raise ValueError("ends in a number but is not an IPv4 address")
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise ValueError("ends in a number but is not an IPv4 address") from None


def parse_target(url: str) -> Target:
    """The scheme, host and port of an outbound URL; ValueError saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("must be a non-empty http(s) URL")
    return _parse_target(url)


@functools.lru_cache(maxsize=1024)
def _parse_target(url: str) -> Target:
    """:func:`parse_target` of a non-empty text: a function of the text alone, kept for
    the URLs most used (a receiver's URL is parsed once, not per message; its name is
    still resolved at every send)."""
    if any(ord(c) < 0x21 or c == "\\" for c in url):
        raise ValueError("must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry credentials (user:password@)")
    raw = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if parts.netloc.endswith(":"):
        raw = parts.netloc[:-1]
    if not raw:
        raise ValueError("has no host")
    if port == 0:
        raise ValueError("has port 0; expected a port from 1 to 65535")
    port = port if port is not None else (443 if scheme == "https" else 80)
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise ValueError("has an unclosed IPv6 bracket")
        text = unquote(raw[1:-1]).split("%", 1)[0]
        try:
            v6 = ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"has an invalid IPv6 address {text!r}") from None
        return Target(scheme, f"[{v6.compressed}]", port, v6)
    host = unquote(raw)
    try:
        ascii_host = idna.encode(host.rstrip("."), uts46=True).decode("ascii") if host else ""
    except idna.IDNAError:
        ascii_host = host.lower()  # numeric and underscore forms; checked below
        if not all(c.isascii() and (c.isalnum() or c in "-._") for c in ascii_host):
            raise ValueError(f"has an invalid host name {host!r}") from None
    ascii_host = ascii_host.lower().rstrip(".")
    if not ascii_host or ".." in ascii_host:
        raise ValueError(f"has an invalid host name {host!r}")
    v4 = _legacy_ipv4(ascii_host)
    return Target(scheme, ascii_host, port, v4)


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _special(name: str) -> bool:
    """Whether ``name`` is never asked of DNS (``localhost``, ``*.localhost``, a
    metadata name)."""
    return name in SPECIAL_NAMES or name.endswith(".localhost")


def addresses(target: Target, resolver: Resolver | None = None) -> list[IPAddress]:
    """Every address ``target`` stands for: the literal, a special name's, or the
    resolver's answer (in its order, without repeats). OSError when the name does not
    resolve."""
    if target.literal is not None:
        return [target.literal]
    name = target.host
    if _special(name):
        return list(SPECIAL_NAMES.get(name, SPECIAL_NAMES["localhost"]))
    answer = (resolver or _system_resolver)(name, target.port)
    found: list[IPAddress] = []
    for text in answer:
        try:
            address = ipaddress.ip_address(str(text).split("%", 1)[0])
        except ValueError:
            raise OSError(f"{name} resolved to {text!r}, which is no address") from None
        if address not in found:
            found.append(address)
    if not found:
        raise OSError(f"{name} has no address")
    return found


def _refused(target: Target, found: Sequence[IPAddress], policy: OutboundPolicy) -> str | None:
    for address in found:
        why = refusal(address, policy)
        if why is not None:
            via = "" if target.literal is not None else f" ({target.host} resolves to it)"
            return f"the address {address} is {why}{via}"
    return None


def check_url(
    url: str, policy: OutboundPolicy, *, field: str, resolver: Resolver | None = None
) -> None:
    """The create-time check of an outbound URL (a callback's or an HTTP target's).

    Raises :class:`InvalidInput` naming ``field`` when the URL is not http(s), carries
    credentials, has an invalid host, or its host is (a literal, in any spelling) or
    resolves now to an address the guard refuses. A name that does not resolve is
    accepted: every send resolves and checks again. Blocks on DNS: from async code call
    :func:`check_url_async`.
    """
    try:
        target = parse_target(url)
    except ValueError as exc:
        raise InvalidInput(
            f"{field} {exc}", details={"field": field, "expected": "a public http(s) URL"}
        ) from None
    try:
        found = addresses(target, resolver)
    except (OSError, UnicodeError):
        return
    why = _refused(target, found, policy)
    if why is not None:
        raise InvalidInput(
            f"{field} is refused: {why}; outbound calls reach public addresses only "
            "(the operator may allow networks with RUNYARD_OUTBOUND_ALLOW)",
            details={"field": field, "expected": "a public http(s) URL"},
        )


async def check_url_async(
    url: str, policy: OutboundPolicy, *, field: str, resolver: Resolver | None = None
) -> None:
    """:func:`check_url` with DNS in a thread, for the event loop."""
    await asyncio.to_thread(check_url, url, policy, field=field, resolver=resolver)


async def resolve_checked(
    url: str, policy: OutboundPolicy, resolver: Resolver | None = None
) -> tuple[Target, list[IPAddress]]:
    """The send-time check: the URL's target and its addresses, resolved once (in a
    thread), every one allowed. OutboundRefused when any is refused or the URL is
    invalid; OutboundFailed when the name does not resolve."""
    try:
        target = parse_target(url)
    except ValueError as exc:
        raise OutboundRefused(f"url {exc}", details={"url": url}) from None
    try:
        if target.literal is not None or _special(target.host):
            found = addresses(target)  # (nothing to ask of DNS: no thread)
        else:
            found = await asyncio.to_thread(addresses, target, resolver)
    except (OSError, UnicodeError) as exc:
        raise OutboundFailed(
            f"{target.host} does not resolve: {exc}", details={"url": url}
        ) from None
    why = _refused(target, found, policy)
    if why is not None:
        raise OutboundRefused(f"refused: {why}", details={"url": url})
    return target, found
