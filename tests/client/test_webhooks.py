"""The Standard Webhooks verifier, against signatures computed here independently."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from runyard.client import WebhookVerificationError, WebhookVerifier, verify_webhook

KEY = b"\x01" * 8 + b"runyard-test-secret" + bytes(range(5))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
NOW = 1_700_000_000
BODY = json.dumps({"run_id": "run_1", "status": "SUCCEEDED", "result": {"n": 1}}).encode()


def reference_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """What the Standard Webhooks spec says, written out with hmac and hashlib only."""
    content = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(signature: str, timestamp: int = NOW, msg_id: str = MSG_ID) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_the_published_example_vector() -> None:
    # the example of the Standard Webhooks specification (secret, id, timestamp, body)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    sent = headers(sig, 1614265330, "msg_p5jXN8AQM9LWM0D4loKWxJek")
    assert verify_webhook(secret, body, sent, now=1614265330) == {"test": 2432232314}
    assert WebhookVerifier(secret).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == sig


def test_signatures_computed_independently_verify() -> None:
    sig = reference_signature(KEY, MSG_ID, NOW, BODY)
    verifier = WebhookVerifier(SECRET)
    assert verifier.sign(MSG_ID, NOW, BODY) == sig
    assert verifier.verify(BODY, headers(sig), now=NOW)["status"] == "SUCCEEDED"
    assert verifier.verify(BODY.decode(), headers(sig), now=NOW + 299)["run_id"] == "run_1"
    # header names are case-insensitive; raw key bytes work as the secret
    upper = {k.title(): v for k, v in headers(sig).items()}
    assert WebhookVerifier(KEY).verify(BODY, upper, now=NOW)["result"] == {"n": 1}


def test_several_signatures_one_valid() -> None:
    good = reference_signature(KEY, MSG_ID, NOW, BODY)
    other = reference_signature(b"rotated-out-key", MSG_ID, NOW, BODY)
    sent = headers(f"v2,abc {other} {good}")
    assert verify_webhook(SECRET, BODY, sent, now=NOW)["run_id"] == "run_1"


@pytest.mark.parametrize(
    ("case", "sent", "body", "now"),
    [
        ("tampered body", None, BODY.replace(b"SUCCEEDED", b"FAILED"), NOW),
        ("wrong key", reference_signature(b"another", MSG_ID, NOW, BODY), BODY, NOW),
        ("other id", "other-id", BODY, NOW),
        ("too old", None, BODY, NOW + 301),
        ("future", None, BODY, NOW - 301),
        ("no v1", "v2," + reference_signature(KEY, MSG_ID, NOW, BODY)[3:], BODY, NOW),
        ("empty", "", BODY, NOW),
    ],
)
def test_refused(case: str, sent: str | None, body: bytes, now: int) -> None:
    good = reference_signature(KEY, MSG_ID, NOW, BODY)
    if case == "other id":
        hs = headers(good, msg_id="msg_other")
    else:
        hs = headers(good if sent is None else sent)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, body, hs, now=now)


def test_missing_headers_and_bad_timestamp() -> None:
    good = reference_signature(KEY, MSG_ID, NOW, BODY)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        hs = headers(good)
        del hs[name]
        with pytest.raises(WebhookVerificationError, match=name):
            verify_webhook(SECRET, BODY, hs, now=NOW)
    with pytest.raises(WebhookVerificationError, match="integer"):
        verify_webhook(SECRET, BODY, headers(good, timestamp="soon"), now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WebhookVerifier("whsec_***not base64***")
