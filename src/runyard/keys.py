"""API keys: ``ry_`` + 32 random base62 characters + a 6-character checksum.

The key is shown once; the store keeps a SHA-256 digest. The checksum lets a client or
a secret scanner reject a mistyped key without asking the server; the server compares
digests in constant time through the unique index lookup and ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib

PREFIX = "ry_"
SCOPES = ("read", "write", "admin")
_RANK = {s: i for i, s in enumerate(SCOPES)}
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY = 32


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), 6)


def generate() -> str:
    """A new key (about 190 bits of entropy)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY))
    return f"{PREFIX}{body}{_checksum(body)}"


def well_formed(key: str) -> bool:
    """The prefix, the length and the checksum are right (says nothing of validity)."""
    if not key.startswith(PREFIX) or len(key) != len(PREFIX) + _BODY + 6:
        return False
    body, check = key[len(PREFIX) : -6], key[-6:]
    return all(c in _ALPHABET for c in body) and hmac.compare_digest(check, _checksum(body))


def digest(key: str) -> str:
    """What the store keeps (hex SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str:
    """A public id to list and revoke a key by, derived from it (not a secret)."""
    return "key_" + hashlib.sha256(("id:" + key).encode()).hexdigest()[:12]


def allows(granted: list[str] | tuple[str, ...], needed: str) -> bool:
    """admin ⊃ write ⊃ read."""
    return any(_RANK.get(g, -1) >= _RANK[needed] for g in granted)
