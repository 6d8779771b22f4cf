"""Verify the callbacks Runyard sends, signed per the Standard Webhooks convention.

Each callback carries three headers: ``webhook-id`` (unique per message, the same on a
retry), ``webhook-timestamp`` (seconds since the epoch) and ``webhook-signature``: one
or more space-separated ``v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``,
keyed with the deployment's secret ``whsec_<base64>``::

    verifier = WebhookVerifier(os.environ["RUNYARD_WEBHOOK_SECRET"])

    @app.post("/runyard")
    async def callback(request: Request) -> None:
        payload = verifier.verify(await request.body(), request.headers)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from ..errors import RunyardError

SECRET_PREFIX = "whsec_"
#: How far a timestamp may be from now, either way (replayed or badly clocked messages).
TOLERANCE_S = 5 * 60


class WebhookVerificationError(RunyardError):
    """The webhook's signature or timestamp is not valid."""

    code = "invalid_webhook"
    http_status = 400


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive; HTTP headers are not
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None:
        raise WebhookVerificationError(f"missing header {name}")
    return value


class WebhookVerifier:
    """Checks a callback's signature (constant-time) and timestamp (within
    ``tolerance_s``) with the deployment's secret (``whsec_...`` or raw bytes)."""

    def __init__(self, secret: str | bytes, *, tolerance_s: float = TOLERANCE_S) -> None:
        self._key = _secret_bytes(secret)
        if not self._key:
            raise ValueError("the webhook secret is empty")
        self.tolerance_s = tolerance_s

    def sign(self, msg_id: str, timestamp: int, body: bytes | str) -> str:
        """The ``webhook-signature`` header value for this message."""
        payload = body.encode() if isinstance(body, str) else body
        mac = hmac.new(self._key, f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256)
        return "v1," + base64.b64encode(mac.digest()).decode()

    def verify(
        self, body: bytes | str, headers: Mapping[str, str], *, now: float | None = None
    ) -> Any:
        """The JSON payload if the message is authentic and fresh; otherwise
        :class:`WebhookVerificationError`. Pass the body exactly as received."""
        msg_id = _header(headers, "webhook-id")
        raw_ts = _header(headers, "webhook-timestamp")
        signatures = _header(headers, "webhook-signature")
        try:
            timestamp = int(raw_ts)
        except ValueError:
            raise WebhookVerificationError("webhook-timestamp is not an integer") from None
        current = time.time() if now is None else now
        if timestamp < current - self.tolerance_s:
            raise WebhookVerificationError("the message is too old")
        if timestamp > current + self.tolerance_s:
            raise WebhookVerificationError("the message timestamp is in the future")
        expected = self.sign(msg_id, timestamp, body).partition(",")[2].encode()
        matched = False
        for candidate in signatures.split():
            version, _, sig = candidate.partition(",")
            # compare every v1 signature, without stopping early, in constant time each
            if version == "v1" and hmac.compare_digest(sig.encode(), expected):
                matched = True
        if not matched:
            raise WebhookVerificationError("no matching signature")
        text = body.decode() if isinstance(body, bytes) else body
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise WebhookVerificationError("the body is not JSON") from None


def verify_webhook(
    secret: str | bytes,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """:meth:`WebhookVerifier.verify` in one call."""
    return WebhookVerifier(secret, tolerance_s=tolerance_s).verify(body, headers, now=now)
