"""The outbound guard at create time: ``check_url`` refuses every spelling of a refused
address (checked against ssrfguard as an independent oracle), names the field, accepts
public URLs and names that do not resolve yet, and refuses names that resolve (now) only
or also to a refused address."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest
import ssrfguard

from runyard.errors import InvalidInput
from runyard.outbound import (
    OutboundPolicy,
    Resolver,
    check_url,
    parse_networks,
    parse_target,
    refusal,
)
from tests.outbound.spellings import SPELLINGS

DEFAULT = OutboundPolicy()
FIELD = "callback.url"

#: Refused names that no resolver is asked about (the oracle cannot resolve them offline).
REFUSED_NAMES = [
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./",
    "http://METADATA.google.internal/",
    "http://metadata.goog/",
    "http://instance-data/latest/meta-data/",
    "http://localhost.localhost/",
    "http://localhost./",
    "http://a.localhost/",
]

PUBLIC = [
    "http://8.8.8.8/",
    "https://1.1.1.1:8443/path?q=1",
    "http://16843009/",  # 1.1.1.1 in decimal
    "http://[2606:4700:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/",  # NAT64 of 8.8.8.8
    "http://93.184.216.34./",
]

INVALID = [
    ("ftp://8.8.8.8/", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("gopher://8.8.8.8/", "http or https"),
    ("http://user:pw@8.8.8.8/", "credentials"),
    ("http://user@8.8.8.8/", "credentials"),
    ("http:///path", "no host"),
    ("http://1.2.3.4.5/", "IPv4"),
    ("http://0x100000000/", "IPv4"),
    ("http://256.256.256.256/", "IPv4"),
    ("http://[::1/", "valid URL"),
    ("http://[zz::1]/", "IPv6"),
    ("http://8.8.8.8:0/", "port"),
    ("http://8.8.8.8:99999/", "valid URL"),
    ("http://exa mple.com/", "spaces"),
    ("http://a..b/", "host name"),
    ("", "non-empty"),
]


def oracle_refuses(url: str) -> bool:
    """Whether ssrfguard (its default policy, the system resolver) refuses ``url``."""
    policy = ssrfguard.Policy()
    try:
        target = policy.check_url(url)
        ssrfguard.resolve(target, policy=policy)
    except ssrfguard.SSRFGuardError:
        return True
    return False


def resolving_to(*answer: str) -> tuple[list[str], Resolver]:
    """A resolver answering ``answer`` for every name, and the names it was asked."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return list(answer)

    return asked, resolve


def test_there_are_at_least_50_spellings() -> None:
    assert len(SPELLINGS) >= 50
    assert len(set(SPELLINGS)) == len(SPELLINGS)


@pytest.mark.parametrize("url", SPELLINGS)
def test_the_oracle_refuses_each_spelling(url: str) -> None:
    """The list is a list of refusals by an independent guard, not only by ours."""
    assert oracle_refuses(url), url


@pytest.mark.parametrize("url", SPELLINGS)
def test_each_spelling_is_refused_at_create_time_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_url(url, DEFAULT, field=FIELD)
    assert caught.value.message.startswith(f"{FIELD} is refused: the address ")
    assert caught.value.details["field"] == FIELD
    assert "RUNYARD_OUTBOUND_ALLOW" in caught.value.message


@pytest.mark.parametrize("url", REFUSED_NAMES)
def test_metadata_and_localhost_names_are_refused_without_asking_dns(url: str) -> None:
    asked, resolver = resolving_to("8.8.8.8")
    with pytest.raises(InvalidInput, match=r"^callback\.url is refused"):
        check_url(url, DEFAULT, field=FIELD, resolver=resolver)
    assert asked == []


@pytest.mark.parametrize("url", PUBLIC)
def test_public_urls_pass(url: str) -> None:
    """(ssrfguard is stricter here: it refuses numeric spellings of public addresses,
    all of NAT64, and ports other than 80 and 443.)"""
    check_url(url, DEFAULT, field=FIELD)


@pytest.mark.parametrize(("url", "says"), INVALID)
def test_invalid_urls_are_refused_saying_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_url(url, DEFAULT, field="url")
    assert caught.value.message.startswith("url ")
    assert says in caught.value.message
    assert caught.value.details == {"field": "url", "expected": "a public http(s) URL"}


@pytest.mark.parametrize(
    "answer",
    [("10.1.2.3",), ("192.168.1.10",), ("fd12::1",), ("::ffff:10.0.0.1",), ("169.254.169.254",)],
)
def test_a_name_that_resolves_to_a_refused_address_is_refused(answer: tuple[str, ...]) -> None:
    asked, resolver = resolving_to(*answer)
    with pytest.raises(InvalidInput, match=r"\(hooks\.example\.com resolves to it\)"):
        check_url(
            "https://Hooks.Example.COM./x",
            DEFAULT,
            field=FIELD,
            resolver=resolver,
        )
    assert asked == ["hooks.example.com"]


def test_a_name_that_resolves_also_to_a_refused_address_is_refused() -> None:
    _, resolver = resolving_to("93.184.216.34", "2606:2800:220:1::1", "127.0.0.1")
    with pytest.raises(InvalidInput, match=r"127\.0\.0\.1 is loopback"):
        check_url("https://hooks.example.com/", DEFAULT, field=FIELD, resolver=resolver)


def test_a_name_that_resolves_to_public_addresses_passes() -> None:
    asked, resolver = resolving_to("93.184.216.34", "2606:2800:220:1::1")
    check_url("https://hooks.example.com/", DEFAULT, field=FIELD, resolver=resolver)
    assert asked == ["hooks.example.com"]


def test_an_idn_name_is_resolved_in_its_ascii_form() -> None:
    asked, resolver = resolving_to("93.184.216.34")
    check_url("https://bücher.example/", DEFAULT, field=FIELD, resolver=resolver)
    assert asked == ["xn--bcher-kva.example"]


def test_a_name_that_does_not_resolve_yet_is_accepted_at_create_time() -> None:
    def nowhere(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    check_url("https://not-yet.example/", DEFAULT, field=FIELD, resolver=nowhere)


def test_the_real_resolver_is_the_default() -> None:
    """``localhost`` is special-cased; a machine's own name goes through getaddrinfo."""
    name = socket.gethostname()
    try:
        mine = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    except OSError:
        pytest.skip("this machine's name does not resolve")
    url = f"http://{name}/"
    refused = any(refusal(ipaddress.ip_address(str(a).split("%")[0]), DEFAULT) for a in mine)
    if refused:
        with pytest.raises(InvalidInput, match="resolves to it"):
            check_url(url, DEFAULT, field=FIELD)
    else:
        check_url(url, DEFAULT, field=FIELD)


def test_the_operator_allows_loopback_explicitly() -> None:
    allow = OutboundPolicy(allow=parse_networks("127.0.0.0/8"))
    check_url("http://127.0.0.1:8080/", allow, field=FIELD)
    check_url("http://127.1/", allow, field=FIELD)
    check_url("http://[::ffff:127.0.0.1]/", allow, field=FIELD)  # the same address
    with pytest.raises(InvalidInput, match="::1 is loopback"):
        check_url("http://[::1]/", allow, field=FIELD)
    with pytest.raises(InvalidInput, match="::1 is loopback"):
        check_url("http://localhost/", allow, field=FIELD)  # stands for 127.0.0.1 and ::1
    with pytest.raises(InvalidInput, match=r"10\.0\.0\.1 is private"):
        check_url("http://10.0.0.1/", allow, field=FIELD)
    both = OutboundPolicy(allow=parse_networks("127.0.0.0/8, ::1"))
    check_url("http://localhost/", both, field=FIELD)


def test_embedded_addresses_are_named_in_the_refusal() -> None:
    cases = {
        "64:ff9b::a9fe:a9fe": "NAT64 of 169.254.169.254",
        "2002:7f00:1::": "6to4 of 127.0.0.1",
        "::ffff:10.0.0.1": "IPv4-mapped 10.0.0.1 (private)",
        "::127.0.0.1": "IPv4-compatible of 127.0.0.1",
    }
    for text, says in cases.items():
        why = refusal(ipaddress.ip_address(text), DEFAULT)
        assert why is not None and why.startswith(says), (text, why)


def test_parse_target_normalises_the_host() -> None:
    assert parse_target("HTTP://Example.COM.:8080/x").host == "example.com"
    assert parse_target("https://[FE80::1%25eth0]/").host == "[fe80::1]"
    assert str(parse_target("http://0x7f.1/").literal) == "127.0.0.1"
    assert parse_target("http://xn--bcher-kva.example/").host == "xn--bcher-kva.example"
    assert parse_target("http://8.8.8.8/").port == 80
    assert parse_target("https://8.8.8.8/").port == 443


def test_from_env_reads_the_operator_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_OUTBOUND_ALLOW", "127.0.0.0/8, ::1,10.1.2.3")
    monkeypatch.setenv("RUNYARD_OUTBOUND_MAX_BODY", "2048")
    monkeypatch.setenv("RUNYARD_OUTBOUND_TIMEOUT_S", "2.5")
    policy = OutboundPolicy.from_env()
    assert [str(n) for n in policy.allow] == ["127.0.0.0/8", "::1/128", "10.1.2.3/32"]
    assert (policy.max_body_bytes, policy.timeout_s) == (2048, 2.5)
    monkeypatch.delenv("RUNYARD_OUTBOUND_ALLOW")
    monkeypatch.delenv("RUNYARD_OUTBOUND_MAX_BODY")
    monkeypatch.delenv("RUNYARD_OUTBOUND_TIMEOUT_S")
    assert OutboundPolicy.from_env() == OutboundPolicy()
    assert OutboundPolicy().timeout_s == 15.0


def test_a_bad_operator_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_OUTBOUND_ALLOW", "127.0.0.0/8,loopback")
    with pytest.raises(ValueError, match=r"RUNYARD_OUTBOUND_ALLOW: 'loopback' is not a network"):
        OutboundPolicy.from_env()
