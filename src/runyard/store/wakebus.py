"""Cross-process wake-ups for SQLite: what LISTEN/NOTIFY is on PostgreSQL.

Every process that watches the database listens on a Unix stream socket in Linux's
abstract namespace (no file to clean up, nothing to collide with) and names it by an
empty marker file in ``<database>.wake/``. After a write transaction commits, the writer
sends what it announced (new work is due; run X changed) to every listener named there,
its own process included, over connections it keeps open. New work is told only to
the processes that run a worker (their marker's name ends in ``.work``): the others
would only be woken for nothing.

Everything sent is a hint, as on PostgreSQL: a listener that cannot keep up (its socket
buffer full) is told "anything may have changed" once it can, a marker whose process is
gone is removed by the first writer that finds nobody behind it, and every waiter still
re-checks on a timeout. Elsewhere than Linux (no abstract namespace) the watcher polls
``PRAGMA data_version`` instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import socket
import sys
import threading
import time
from collections.abc import Collection, Iterable

from .tx import RUN, WAKE

#: "Anything may have changed" (a listener that missed messages, or just connected).
ANY = "*"
_ADDRESS = "\0runyard-wake-{token}"
#: How often a listener checks that its marker is still there.
_MARKER_CHECK_S = 1.0
_CHUNK = 65536
_STILL_NS = 100_000_000
#: Ends the marker of a listener that is also told of new work.
WORK_SUFFIX = ".work"


def supported() -> bool:
    return sys.platform.startswith("linux")


def encode(announcements: Iterable[tuple[str, str]], *, work: bool = True) -> bytes:
    """The message for a listener (``work``: one told of new work; b"" if nothing is)."""
    lines = [
        (b"W" if channel == WAKE else b"R") + payload.encode()
        for channel, payload in announcements
        if work or channel != WAKE
    ]
    return b"\n".join(lines) + b"\n" if lines else b""


def _decode(line: bytes) -> tuple[str, str] | None:
    if line[:1] == b"W":
        return (WAKE, line[1:].decode(errors="replace"))  # (a time, if not due now)
    if line == b"A":
        return (ANY, "")
    if line[:1] == b"R" and len(line) > 1:
        return (RUN, line[1:].decode(errors="replace"))
    return None  # not ours: ignored


class _Peer:
    __slots__ = ("owed", "pending", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""  # the rest of a message the socket took only part of
        self.owed = False  # messages were dropped: send "anything may have changed"


class Publisher:
    """Sends announcements to every listener of one directory (thread-safe)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._peers: dict[str, _Peer | None] = {}  # None: connect again on the next send
        self._seen_mtime: int | None = None

    def publish(
        self, announcements: Iterable[tuple[str, str]], *, skip: Collection[str] = ()
    ) -> None:
        """Send ``announcements`` to every listener but those whose token is in ``skip``
        (the sender's own, told otherwise)."""
        items = list(announcements)
        data = {True: encode(items), False: encode(items, work=False)}
        with self._lock:
            self._refresh()
            for marker in list(self._peers):
                if skip and marker.removesuffix(WORK_SUFFIX) in skip:
                    continue
                message = data[marker.endswith(WORK_SUFFIX)]
                if message:
                    self._send(marker, message)

    def close(self) -> None:
        with self._lock:
            for peer in self._peers.values():
                if peer is not None:
                    peer.sock.close()
            self._peers.clear()
            self._seen_mtime = None

    def _refresh(self) -> None:
        """Follow the markers (a directory's mtime changes when an entry comes or goes)."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime is not None and mtime == self._seen_mtime:
            return
        # An mtime is as coarse as the kernel's tick: a marker added in the same tick
        # as the one just listed would not change it. Until the directory has been still
        # for a while, it is listed again on every send.
        still = mtime is not None and time.time_ns() - mtime > _STILL_NS
        self._seen_mtime = mtime if still else None
        tokens = set(os.listdir(self.directory)) if mtime is not None else set()
        for gone in set(self._peers) - tokens:
            self._drop(gone, unlink=False)
        for token in tokens - set(self._peers):
            if not token.startswith("."):
                self._peers[token] = None

    def _drop(self, token: str, *, unlink: bool) -> None:
        peer = self._peers.pop(token, None)
        if peer is not None:
            peer.sock.close()
        if unlink:  # nobody listens behind this marker any more
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.directory, token))

    def _send(self, token: str, data: bytes) -> None:
        peer = self._peers[token]
        if peer is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(_ADDRESS.format(token=token.removesuffix(WORK_SUFFIX)))
            except BlockingIOError:
                sock.close()  # its backlog is full: try again next time
                return
            except OSError:
                sock.close()
                self._drop(token, unlink=True)
                return
            peer = self._peers[token] = _Peer(sock)
        try:
            if peer.pending:
                sent = peer.sock.send(peer.pending)
                peer.pending = peer.pending[sent:]
                if peer.pending:
                    peer.owed = True
                    return
            out = b"A\n" + data if peer.owed else data
            sent = peer.sock.send(out)
            peer.owed = False
            peer.pending = out[sent:]
        except BlockingIOError:
            peer.owed = True
        except OSError:
            peer.sock.close()
            self._peers[token] = None  # closed: reconnect (or find it gone) next time


class Listener:
    """One process's socket and marker. :meth:`receive` is called from one thread at a
    time; :meth:`fileno` (readable when anything arrived) lets an event loop wait on it."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self.marker = os.path.join(directory, self.token)
        self._work = False
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(_ADDRESS.format(token=self.token))
        self._server.listen(64)
        self._server.setblocking(False)
        self._selector = selectors.EpollSelector()  # Linux only, as the abstract namespace
        self._selector.register(self._server, selectors.EVENT_READ)
        self._buffers: dict[socket.socket, bytes] = {}
        self._closed = False
        #: The bus tells every process of every run's changes; a socket is never lost.
        self.hears_runs = True
        self.lost = False
        self._write_marker()
        self._marker_checked = time.monotonic()

    def _write_marker(self) -> None:
        with open(self.marker, "wb"):
            pass

    def fileno(self) -> int:
        return self._selector.fileno()  # an epoll descriptor is itself pollable

    def want_work(self) -> None:
        """Be told of new work too (a worker runs in this process). The marker is renamed:
        a writer that lists the directory afterwards sends it; work announced before
        that, the worker finds with its first claim."""
        if self._work:
            return
        self._work = True
        old, self.marker = self.marker, self.marker + WORK_SUFFIX
        try:
            os.rename(old, self.marker)
        except FileNotFoundError:
            self._write_marker()  # deleted meanwhile: keep_marker would have made it

    def subscribe(self, *, work: bool, runs: bool) -> None:
        """(Every run is told already; new work through :meth:`want_work`.)"""

    def receive(self, timeout: float) -> list[tuple[str, str]]:
        """What arrived within ``timeout`` seconds (empty if nothing did)."""
        out: list[tuple[str, str]] = []
        for key, _ in self._selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self._server:
                self._accept()
                continue
            try:
                chunk = sock.recv(_CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._selector.unregister(sock)
                self._buffers.pop(sock, None)
                sock.close()
                continue
            *lines, rest = (self._buffers.get(sock, b"") + chunk).split(b"\n")
            self._buffers[sock] = rest
            for line in lines:
                message = _decode(line)
                if message is not None:
                    out.append(message)
        self.keep_marker()
        return out

    def keep_marker(self) -> None:
        """Re-create the marker if someone deleted it (checked once a second at most)."""
        now = time.monotonic()
        if now - self._marker_checked >= _MARKER_CHECK_S:
            self._marker_checked = now
            if not os.path.exists(self.marker):
                os.makedirs(self.directory, exist_ok=True)
                self._write_marker()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            self._selector.register(conn, selectors.EVENT_READ)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.lost = True
        with contextlib.suppress(OSError):
            os.unlink(self.marker)
        for key in list(self._selector.get_map().values()):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            sock.close()
        self._selector.close()
        self._buffers.clear()
