"""Connections kept alive by the outbound client (runyard.outbound.Connections), against
real HTTP/1.1 servers on loopback: reused for the same checked destination, never for
another address (a new DNS answer), never once the policy refuses the address, not kept
when the response was not read to the end; each send still resolves once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runyard.errors import OutboundFailed, OutboundRefused
from runyard.outbound import Connections, OutboundPolicy, Resolver, parse_networks, send

LOOPBACK = OutboundPolicy(allow=parse_networks("127.0.0.0/8"))


@dataclass
class Server:
    """A keep-alive HTTP/1.1 server on one loopback address: each request's client port
    (one per TCP connection) and path."""

    host: str
    port: int
    seen: list[tuple[int, str]] = field(default_factory=list)

    def connections(self) -> int:
        return len({client_port for client_port, _ in self.seen})


def _serve(host: str, port: int = 0) -> tuple[Server, ThreadingHTTPServer, threading.Thread]:
    box: list[Server] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            box[0].seen.append((self.client_address[1], self.path))
            body = b"x" * 5000 if self.path == "/big" else b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    box.append(Server(host, server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return box[0], server, thread


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """Two servers on one port: 127.0.0.1 and 127.0.0.2 (both loopback on Linux)."""
    first, s1, t1 = _serve("127.0.0.1")
    second, s2, t2 = _serve("127.0.0.2", first.port)
    try:
        yield first, second
    finally:
        for server, thread in ((s1, t1), (s2, t2)):
            server.shutdown()
            server.server_close()
            thread.join(10)


def answering(answers: list[str]) -> tuple[list[str], Resolver]:
    """A resolver giving ``answers`` in turn, one a resolution; the names asked."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return [answers[min(len(asked), len(answers)) - 1]]

    return asked, resolve


async def post(
    url: str,
    conns: Connections | None,
    policy: OutboundPolicy = LOOPBACK,
    resolver: Resolver | None = None,
) -> bytes:
    response = await send(
        "POST",
        url,
        headers={},
        body=b"{}",
        policy=policy,
        resolver=resolver,
        connections=conns,
    )
    assert response.status == 200
    return response.body


def test_one_destination_reuses_one_connection(servers: tuple[Server, Server]) -> None:
    first, _ = servers

    async def main() -> None:
        conns = Connections()
        try:
            for i in range(5):
                await post(f"http://127.0.0.1:{first.port}/m{i}", conns)
            assert conns.destinations == 1 and conns.idle() == 1
            # ten at once: ten connections, kept for the next ones
            await asyncio.gather(
                *(post(f"http://127.0.0.1:{first.port}/c{i}", conns) for i in range(10))
            )
            assert conns.idle() == 10
        finally:
            await conns.aclose()
        assert conns.idle() == 0
        await post(f"http://127.0.0.1:{first.port}/after", conns)  # closed: one of its own
        assert conns.idle() == 0

    asyncio.run(main())
    assert [p for _, p in first.seen[:5]] == [f"/m{i}" for i in range(5)]
    assert len({port for port, _ in first.seen[:5]}) == 1
    assert first.connections() == 1 + 9 + 1  # the first reused once more among the ten


def test_without_connections_each_call_has_its_own(servers: tuple[Server, Server]) -> None:
    first, _ = servers

    async def main() -> None:
        for i in range(3):
            await post(f"http://127.0.0.1:{first.port}/{i}", None)

    asyncio.run(main())
    assert first.connections() == 3


def test_a_new_dns_answer_is_connected_to_not_the_kept_connection(
    servers: tuple[Server, Server],
) -> None:
    """hooks.example.test resolves to 127.0.0.1, then to 127.0.0.2: the second send
    resolves again and connects to 127.0.0.2, although a connection to 127.0.0.1 for the
    same name and port is kept."""
    first, second = servers
    asked, resolver = answering(["127.0.0.1", "127.0.0.2", "127.0.0.2"])
    url = f"http://hooks.example.test:{first.port}/hook"

    async def main() -> None:
        conns = Connections()
        try:
            for _ in range(3):
                await post(url, conns, resolver=resolver)
            assert conns.destinations == 2
        finally:
            await conns.aclose()

    asyncio.run(main())
    assert asked == ["hooks.example.test"] * 3  # one resolution a send
    assert len(first.seen) == 1 and len(second.seen) == 2
    assert second.connections() == 1  # the second destination's connection, reused


def test_a_kept_connection_to_an_address_the_policy_now_refuses_is_not_used(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    only_second = OutboundPolicy(allow=parse_networks("127.0.0.2/32"))

    async def main() -> None:
        conns = Connections()
        try:
            await post(f"http://127.0.0.1:{first.port}/a", conns)
            assert conns.idle() == 1
            with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1 is loopback"):
                await post(f"http://127.0.0.1:{first.port}/b", conns, policy=only_second)
            with pytest.raises(OutboundRefused):
                await post(f"http://127.0.0.1:{first.port}/c", conns, policy=OutboundPolicy())
            # another policy allowing it is another destination: a new connection
            other = OutboundPolicy(allow=LOOPBACK.allow, timeout_s=5.0)
            await post(f"http://127.0.0.1:{first.port}/d", conns, policy=other)
            await post(f"http://127.0.0.2:{second.port}/e", conns, policy=only_second)
        finally:
            await conns.aclose()

    asyncio.run(main())
    assert [p for _, p in first.seen] == ["/a", "/d"]
    assert first.connections() == 2
    assert [p for _, p in second.seen] == ["/e"]


def test_a_response_not_read_to_the_end_does_not_keep_its_connection(
    servers: tuple[Server, Server],
) -> None:
    first, _ = servers
    small = OutboundPolicy(allow=LOOPBACK.allow, max_body_bytes=100)

    async def main() -> None:
        conns = Connections()
        try:
            with pytest.raises(OutboundFailed, match="larger than 100 bytes"):
                await post(f"http://127.0.0.1:{first.port}/big", conns, policy=small)
            assert conns.idle() == 0
            await post(f"http://127.0.0.1:{first.port}/ok", conns, policy=small)
            assert conns.idle() == 1
        finally:
            await conns.aclose()

    asyncio.run(main())
    assert first.connections() == 2


def test_connections_of_another_event_loop_are_not_used(servers: tuple[Server, Server]) -> None:
    first, _ = servers
    conns = Connections()

    async def other_loop() -> None:
        await post(f"http://127.0.0.1:{first.port}/other", conns)

    async def main() -> None:
        try:
            await post(f"http://127.0.0.1:{first.port}/mine", conns)
            assert conns.idle() == 1  # bound to this loop
            await asyncio.to_thread(asyncio.run, other_loop())  # a connection of its own
            await post(f"http://127.0.0.1:{first.port}/mine", conns)
            assert conns.idle() == 1
        finally:
            await conns.aclose()

    asyncio.run(main())
    assert first.connections() == 2
    assert len({port for port, path in first.seen if path == "/mine"}) == 1
