"""The outbound client at send time, against a real HTTP server on loopback: reached only
when the operator allows 127.0.0.0/8; every refused spelling refused again at send time;
the checked address is the one connected to (one resolution, the original Host header); no
redirect followed; the body and the time bounded."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from runyard.errors import OutboundError, OutboundFailed, OutboundRefused
from runyard.outbound import (
    OutboundPolicy,
    OutboundResponse,
    Resolver,
    check_url,
    parse_networks,
    send,
)
from tests.outbound.spellings import SPELLINGS

LOOPBACK = OutboundPolicy(allow=parse_networks("127.0.0.0/8"))
BIG = 64 * 1024


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 and what it saw."""

    port: int
    hits: list[tuple[str, str, str, bytes]] = field(
        default_factory=list
    )  # method, path, Host, body
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [hit[1] for hit in self.hits]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes, extra: Sequence[tuple[str, str]] = ()) -> None:
            self.send_response(status)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            me = box[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            me.hits.append((self.command, self.path, self.headers.get("Host", ""), body))
            if self.path == "/redirect":
                self._answer(302, b"moved", [("Location", me.url("/secret"))])
            elif self.path == "/big":
                self._answer(200, b"x" * BIG)
            elif self.path == "/slow":
                me.release.wait(30)
                self._answer(200, b"late")
            elif self.path == "/echo":
                self._answer(201, body, [("X-Seen-Host", self.headers.get("Host", ""))])
            else:
                self._answer(200, b"ok", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

        do_GET = do_POST = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.append(Receiver(port=server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        box[0].release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def get(url: str, policy: OutboundPolicy, **kw: object) -> OutboundResponse:
    return asyncio.run(send("GET", url, headers={}, body=None, policy=policy, **kw))  # type: ignore[arg-type]


def counting(answer: str) -> tuple[list[str], Resolver]:
    asked: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return [answer]

    return asked, resolve


def test_a_loopback_server_is_reached_only_when_the_operator_allows_it(
    receiver: Receiver,
) -> None:
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1 is loopback"):
        get(receiver.url("/ok"), OutboundPolicy())
    assert receiver.hits == []
    response = get(receiver.url("/ok?x=1"), LOOPBACK)
    assert (response.status, response.body) == (200, b"ok")
    assert response.headers["set-cookie"] == "a=1, b=2"
    assert 0 < response.elapsed_ms < 15_000
    assert receiver.paths() == ["/ok?x=1"]


@pytest.mark.parametrize("url", SPELLINGS)
def test_each_spelling_is_refused_at_send_time(url: str, receiver: Receiver) -> None:
    with pytest.raises(OutboundRefused, match=r"^refused: the address "):
        get(url, OutboundPolicy(), timeout_s=5)
    assert receiver.hits == []


def test_a_dns_answer_that_changes_after_create_is_refused_at_send(receiver: Receiver) -> None:
    url = f"http://hooks.example.com:{receiver.port}/ok"
    check_url(url, OutboundPolicy(), field="callback.url", resolver=counting("93.184.216.34")[1])
    asked, rebound = counting("10.0.0.7")
    with pytest.raises(OutboundRefused, match=r"10\.0\.0\.7 is private"):
        get(url, OutboundPolicy(), resolver=rebound)
    assert asked == ["hooks.example.com"]


def test_the_checked_address_is_connected_to_with_the_original_host(receiver: Receiver) -> None:
    """One resolution; the connection goes to its answer; the Host header is the name."""
    asked, resolver = counting("127.0.0.1")
    response = asyncio.run(
        send(
            "POST",
            f"http://Hooks.Example.COM.:{receiver.port}/echo",
            headers={"Content-Type": "application/json", "Host": "evil.example"},
            body=b'{"a": 1}',
            policy=LOOPBACK,
            resolver=resolver,
        )
    )
    assert asked == ["hooks.example.com"]
    assert response.status == 201
    assert response.body == b'{"a": 1}'
    assert response.headers["x-seen-host"] == f"hooks.example.com:{receiver.port}"


def test_a_redirect_to_loopback_is_not_followed(receiver: Receiver) -> None:
    response = get(receiver.url("/redirect"), LOOPBACK)
    assert response.status == 302
    assert response.headers["location"] == receiver.url("/secret")
    assert receiver.paths() == ["/redirect"]


def test_a_body_over_the_limit_fails_the_call(receiver: Receiver) -> None:
    exact = OutboundPolicy(allow=LOOPBACK.allow, max_body_bytes=BIG)
    assert len(get(receiver.url("/big"), exact).body) == BIG
    small = OutboundPolicy(allow=LOOPBACK.allow, max_body_bytes=BIG - 1)
    with pytest.raises(OutboundFailed, match=f"larger than {BIG - 1} bytes"):
        get(receiver.url("/big"), small)


def test_the_attempt_is_bounded_in_time(receiver: Receiver) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundFailed, match=r"no complete response within 0\.5 s"):
        get(receiver.url("/slow"), LOOPBACK, timeout_s=0.5)
    assert time.monotonic() - started < 5
    short = OutboundPolicy(allow=LOOPBACK.allow, timeout_s=0.5)
    with pytest.raises(OutboundFailed, match=r"within 0\.5 s"):
        get(receiver.url("/slow"), short)


def test_a_closed_port_fails_the_call() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OutboundFailed, match="ConnectError"):
        get(f"http://127.0.0.1:{port}/", LOOPBACK)


def test_a_name_that_does_not_resolve_fails_at_send() -> None:
    def nowhere(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(OutboundFailed, match="does not resolve"):
        get("https://not-yet.example/", OutboundPolicy(), resolver=nowhere)


def test_an_invalid_url_is_refused_at_send() -> None:
    with pytest.raises(OutboundRefused, match="credentials"):
        get("http://u:p@8.8.8.8/", OutboundPolicy())


def test_a_header_that_is_not_latin1_fails_before_sending(receiver: Receiver) -> None:
    with pytest.raises(OutboundFailed, match="not Latin-1"):
        asyncio.run(
            send("GET", receiver.url("/ok"), headers={"X": "\u2603"}, body=None, policy=LOOPBACK)
        )
    assert receiver.hits == []


def test_errors_are_in_the_one_hierarchy() -> None:
    assert issubclass(OutboundRefused, OutboundError)
    assert issubclass(OutboundFailed, OutboundError)
    assert OutboundRefused("x").to_dict()["code"] == "outbound_refused"
    assert OutboundFailed("x").to_dict()["code"] == "outbound_failed"


@dataclass
class TlsReceiver:
    port: int
    client_context: ssl.SSLContext
    server_names: list[str | None] = field(default_factory=list)


@pytest.fixture
def tls_receiver() -> Iterator[TlsReceiver]:
    """A real HTTPS server on 127.0.0.1 whose certificate is for hooks.example.test only."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    names: list[str | None] = []

    def seen(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    server_context.sni_callback = seen

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield TlsReceiver(server.server_address[1], client_context, names)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_tls_verifies_the_original_name_on_the_checked_address(
    tls_receiver: TlsReceiver,
) -> None:
    """Connected to 127.0.0.1, TLS still sends the name as SNI and checks the certificate
    against it: the certificate's name passes, another name resolving to the same
    address fails."""
    asked, resolver = counting("127.0.0.1")
    port = tls_receiver.port
    response = get(
        f"https://hooks.example.test:{port}/",
        LOOPBACK,
        resolver=resolver,
        ssl_context=tls_receiver.client_context,
    )
    assert (response.status, response.body) == (200, f"hooks.example.test:{port}".encode())
    assert asked == ["hooks.example.test"]
    assert tls_receiver.server_names == ["hooks.example.test"]
    with pytest.raises(OutboundFailed, match=r"CERTIFICATE_VERIFY_FAILED.*[Hh]ostname mismatch"):
        get(
            f"https://other.example.test:{port}/",
            LOOPBACK,
            resolver=resolver,
            ssl_context=tls_receiver.client_context,
        )
    with pytest.raises(OutboundFailed):  # the test CA is not trusted by default
        get(f"https://hooks.example.test:{port}/", LOOPBACK, resolver=resolver)
