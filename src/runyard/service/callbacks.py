"""Callbacks: signed, progressive, at-least-once (SPEC §7, issue 21 item 1).

A run given ``callback: {url, headers}`` (or fired by a schedule that has one) reports to
that URL. Its messages are written to ``deliveries`` by whichever worker looks first
(:meth:`CallbacksMixin.sweep_callbacks`, under the run's callback row locked), then
sent by any worker (:meth:`CallbacksMixin.deliver_due`), each message claimed with a
lease: a worker killed mid-delivery leaves it due again when the lease ends.

Messages (JSON bodies; every one carries its input's ``custom_data`` at the root,
unchanged; a run of many inputs has one stream of messages per input):

* ``{"type": "run.outputs", "run_id", "workflow", "input_index", "custom_data",
  "outputs": [{"key", "data", "emitted_at"}, ...]}``: the outputs emitted, in batches of
  at most :data:`BATCH_MAX`, written once :data:`BATCH_MAX` are waiting or the oldest
  has waited :data:`LINGER_S` (or the run ended);
* ``{"type": "run.finished", "run_id", "workflow", "input_index", "custom_data",
  "status", "result", "error", "credits": {"total", "by_action"}, "finished_at"}``: once
  per input after its outputs, when the run ends (``result``/``error``: the run's with
  one input, the input's own with several; ``status`` is the run's).

Signed per Standard Webhooks: ``webhook-id`` (the message's id, the same on every
attempt), ``webhook-timestamp`` (each attempt's), ``webhook-signature`` ``v1,<base64
HMAC-SHA256 of "id.timestamp.body">`` with every live secret (space-separated). The
secrets (``whsec_<base64>``): ``RUNYARD_WEBHOOK_SECRET`` (comma-separated for a
rotation) if set, else those stored in the database, the first created on first use;
:meth:`CallbacksMixin.rotate_webhook_secret` adds one and keeps the others signing for
a grace period (``runyard webhook-secret rotate``).

Attempts: a 2xx delivers; a 410 stops every message to that URL for the run (and
removes the callback from the schedule that fired it); anything else (a 3xx is never
followed, a timeout, a refused address) is retried after :data:`RETRY_S` (the
``n``-th retry waits ``RETRY_S[n-1]``, ±20 % jitter; ``Retry-After`` given by the
receiver is used instead, at most a day), then the message is ``failed``. Each attempt
is bounded by the outbound client (15 s, response size) and recorded
(``GET /v1/runs/{id}/deliveries``). Nothing of this touches the run.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import logging
import os
import random
import secrets as _secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import jsonutil
from ..config import env_number
from ..errors import InvalidInput, NotFound, OutboundError
from ..models import TERMINAL
from ..outbound import Connections, OutboundPolicy, check_url_async, send
from ..store.tx import Row, Tx
from .core import Core

log = logging.getLogger("runyard.callbacks")

#: Outputs in one ``run.outputs`` message at most.
BATCH_MAX = 100
#: How long an output waits for others to share its message (unless BATCH_MAX wait).
LINGER_S = 0.25
#: The wait before each retry, seconds (5 s ... 8 h: about 23.6 hours in all, 11 attempts).
RETRY_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
#: A receiver's Retry-After is honoured up to this.
RETRY_AFTER_MAX_S = 86400.0
#: Runs whose callback a sweep writes messages for, per transaction.
SWEEP_RUNS = 200
#: The grace period of a rotated secret, by default.
ROTATE_GRACE_S = 86400.0
SECRET_ENV = "RUNYARD_WEBHOOK_SECRET"
SECRET_PREFIX = "whsec_"
#: How long the secrets read are used before they are read again (a rotation reaches
#: every worker within it; RUNYARD_WEBHOOK_SECRET_TTL_S).
SECRETS_TTL_S = env_number("RUNYARD_WEBHOOK_SECRET_TTL_S", 10.0)


def retry_scale() -> float:
    """``RUNYARD_CALLBACK_RETRY_SCALE`` multiplies :data:`RETRY_S` (tests shorten it)."""
    return env_number("RUNYARD_CALLBACK_RETRY_SCALE", 1.0)


def lease_s(policy: OutboundPolicy) -> float:
    """A message's lease: the attempt's bound and a margin (``RUNYARD_CALLBACK_LEASE_S``)."""
    return env_number("RUNYARD_CALLBACK_LEASE_S", policy.timeout_s + 15.0)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a message (Standard Webhooks)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds asked by a ``Retry-After`` header (seconds or an HTTP date), if any."""
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return min(RETRY_AFTER_MAX_S, max(0.0, float(raw)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return min(RETRY_AFTER_MAX_S, max(0.0, when - now))


def retry_delay(attempt: int, scale: float) -> float | None:
    """The wait after failed attempt ``attempt`` (1-based); None once all are spent."""
    if attempt > len(RETRY_S):
        return None
    return RETRY_S[attempt - 1] * scale * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class Delivery:
    """A message of a run's callback and its attempts so far."""

    id: int
    message_id: str
    run_id: str
    input_index: int
    url: str
    kind: str
    state: str
    attempts: list[dict[str, Any]]
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


def _message(row: Row, kind: str, idx: int, custom_data: Any) -> dict[str, Any]:
    return {
        "type": f"run.{kind}",
        "run_id": row["run_id"],
        "workflow": row["workflow"],
        "input_index": idx,
        "custom_data": custom_data,
    }


def sweep_txn(tx: Tx, store: Any, now: float) -> tuple[int, float | None]:
    """Write the messages that are ready for every run whose callback is open; how many
    runs are open and when to look again for outputs lingering (seconds), if any."""
    rows = store.callback_open_runs(tx, SWEEP_RUNS)
    linger: float | None = None
    for row in rows:
        run_id = row["run_id"]
        ended = row["status"] in TERMINAL
        if row["stopped"]:
            store.advance_callback(tx, run_id, int(row["output_cursor"]), False)
            continue
        cursor = int(row["output_cursor"])
        outputs = store.callback_outputs(tx, run_id, cursor, BATCH_MAX * 10)
        inputs = {int(i["idx"]): i for i in store.callback_inputs(tx, run_id)}
        if outputs and not ended and len(outputs) < BATCH_MAX:
            waited = now - float(outputs[0]["created_at"])
            if waited < LINGER_S:
                wait = LINGER_S - waited
                linger = wait if linger is None else min(linger, wait)
                continue
        by_input: dict[int, list[Row]] = {}
        for o in outputs:
            by_input.setdefault(int(o["item_idx"]), []).append(o)
        for idx, outs in by_input.items():
            cd = jsonutil.loads(inputs[idx]["custom_data"]) if idx in inputs else None
            for start in range(0, len(outs), BATCH_MAX):
                batch = outs[start : start + BATCH_MAX]
                body = _message(row, "outputs", idx, cd)
                body["outputs"] = [
                    {
                        "key": o["key"],
                        "data": jsonutil.loads(o["data"]),
                        "emitted_at": o["created_at"],
                    }
                    for o in batch
                ]
                _insert(tx, store, row, f"msg_{run_id}_o{batch[0]['id']}", idx, "outputs", body)
        if outputs:
            cursor = int(outputs[-1]["id"])
        final = ended and len(outputs) < BATCH_MAX * 10
        if final:
            by_action = {
                k: float(v) for k, v in (jsonutil.loads(row["credits_by_action"]) or {}).items()
            }
            for idx, item in sorted(inputs.items()):
                body = _message(row, "finished", idx, jsonutil.loads(item["custom_data"]))
                one = row["input_count"] == 1
                body["status"] = row["status"]
                body["result"] = jsonutil.loads(row["result"] if one else item["result"])
                body["error"] = jsonutil.loads(row["error"] if one else item["error"])
                body["credits"] = {"total": float(row["credits"] or 0), "by_action": by_action}
                body["finished_at"] = row["finished_at"]
                _insert(tx, store, row, f"msg_{run_id}_f{idx}", idx, "finished", body)
        store.advance_callback(tx, run_id, cursor, not final)
    return len(rows), linger


def sweep_claim_txn(
    tx: Tx, store: Any, now: float, owner: str, lease: float, limit: int
) -> tuple[int, float | None, list[Row]]:
    """:func:`sweep_txn`, then the claim of up to ``limit`` due messages (one
    transaction: a run's final message is written and claimed together)."""
    open_runs, linger = sweep_txn(tx, store, now)
    claimed = store.claim_deliveries_txn(tx, owner, lease, limit) if limit > 0 else []
    return open_runs, linger, claimed


def _insert(tx: Tx, store: Any, row: Row, message_id: str, idx: int, kind: str, body: Any) -> None:
    store.insert_delivery(
        tx,
        {
            "message_id": message_id,
            "run_id": row["run_id"],
            "item_idx": idx,
            "url": row["url"],
            "headers": row["headers"],
            "kind": kind,
            "body": jsonutil.dumps(body),
        },
    )


class CallbacksMixin:
    """Callbacks on the :class:`~runyard.service.Service`."""

    core: Core
    _secrets_cache: tuple[float, list[str]] | None = None
    _policy: OutboundPolicy | None = None
    _secrets_lock: asyncio.Lock | None = None

    @property
    def outbound_policy(self) -> OutboundPolicy:
        if self._policy is None:
            self._policy = OutboundPolicy.from_env()
        return self._policy

    async def check_callback(self, callback: Any, field: str = "callback") -> dict[str, Any] | None:
        """The callback as stored (``{"url", "headers"}``), or 422 naming the field."""
        if callback is None:
            return None
        if not isinstance(callback, Mapping) or not isinstance(callback.get("url"), str):
            raise InvalidInput(
                f"{field} must be {{url, headers}} with url a string",
                details={"field": f"{field}.url", "problem": "no url"},
            )
        headers = callback.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidInput(
                f"{field}.headers must be an object of strings",
                details={"field": f"{field}.headers", "problem": "not an object of strings"},
            )
        await check_url_async(callback["url"], self.outbound_policy, field=f"{field}.url")
        return {"url": callback["url"], "headers": dict(headers)}

    # -- secrets ---------------------------------------------------------------------------

    async def webhook_secrets(self) -> list[str]:
        """The secrets that sign, newest first (the first stored on first use)."""
        env = os.environ.get(SECRET_ENV, "").strip()
        if env:
            return [s.strip() for s in env.split(",") if s.strip()]
        cached = self._secrets_cache
        if cached is not None and time.monotonic() - cached[0] < SECRETS_TTL_S:
            return cached[1]
        if self._secrets_lock is None:
            self._secrets_lock = asyncio.Lock()
        async with self._secrets_lock:
            cached = self._secrets_cache
            if cached is not None and time.monotonic() - cached[0] < SECRETS_TTL_S:
                return cached[1]
            store = self.core.store
            rows = await self.core.read(store.webhook_secrets)
            if not rows:
                await self.core.write(store.first_webhook_secret_txn, new_secret())
                rows = await self.core.read(store.webhook_secrets)
            found = [str(r["secret"]) for r in rows]
            self._secrets_cache = (time.monotonic(), found)
            return found

    async def rotate_webhook_secret(self, grace_s: float = ROTATE_GRACE_S) -> str:
        """A new secret signs from now on; the others sign with it for ``grace_s``."""
        secret = new_secret()
        await self.core.write(self.core.store.add_webhook_secret_txn, secret, grace_s)
        self._secrets_cache = None
        return secret

    # -- reading and redelivering ------------------------------------------------------------

    async def list_deliveries(self, run_id: str, limit: int = 1000) -> list[Delivery]:
        store = self.core.store
        await self.core.read(store.get_run, run_id)  # NotFound for an unknown run
        rows, attempts = await self.core.read(store.list_deliveries, run_id, limit)
        by_delivery: dict[int, list[dict[str, Any]]] = {}
        for a in attempts:
            by_delivery.setdefault(int(a["delivery_id"]), []).append(
                {
                    "attempt": a["attempt"],
                    "status_code": a["status_code"],
                    "latency_ms": a["latency_ms"],
                    "error": a["error"],
                    "next_attempt_at": a["next_attempt_at"],
                    "at": a["at"],
                }
            )
        return [
            Delivery(
                id=int(r["id"]),
                message_id=r["message_id"],
                run_id=r["run_id"],
                input_index=int(r["item_idx"]),
                url=r["url"],
                kind=r["kind"],
                state=r["state"],
                attempts=by_delivery.get(int(r["id"]), []),
                next_attempt_at=r["next_attempt_at"] if r["state"] == "pending" else None,
                last_status=r["last_status"],
                last_error=r["last_error"],
                created_at=r["created_at"],
                delivered_at=r["delivered_at"],
            )
            for r in rows
        ]

    async def redeliver(self, run_id: str, delivery_id: int) -> None:
        """Send a message of the run again now (whatever its state)."""
        if not await self.core.write(self.core.store.redeliver_txn, run_id, delivery_id):
            raise NotFound(f"no delivery {delivery_id} of run {run_id!r}")

    # -- the work of a worker ----------------------------------------------------------------

    async def sweep_callbacks(self, owner: str, limit: int) -> tuple[int, float | None, list[Row]]:
        """Write the messages that are ready (see :func:`sweep_txn`) and, in the same
        transaction, claim up to ``limit`` due messages for ``owner`` (those just written
        among them): ``(open runs, linger, claimed)``."""
        return await self.core.write(
            sweep_claim_txn,
            self.core.store,
            time.time(),
            owner,
            lease_s(self.outbound_policy),
            limit,
            inline=False,
        )

    async def claim_deliveries(self, owner: str, limit: int) -> list[Row]:
        return await self.core.write(
            self.core.store.claim_deliveries_txn, owner, lease_s(self.outbound_policy), limit
        )

    async def next_delivery_due(self) -> float | None:
        return await self.core.read(self.core.store.next_delivery_due)

    async def callback_work(self) -> tuple[bool, float | None]:
        """Whether a run's callback is open, and when the next message is due (seconds)."""
        return await self.core.read(self.core.store.callback_work)

    async def deliver(self, owner: str, row: Row, connections: Connections | None = None) -> str:
        """One attempt of a claimed message, recorded; the message's state after it
        (``"lost"``: the lease was lost, nothing recorded). ``connections``: kept alive
        between attempts (the delivery loop's)."""
        body = str(row["body"]).encode()
        timestamp = int(time.time())
        msg_id = str(row["message_id"])
        headers = {
            str(k): str(v)
            for k, v in (jsonutil.loads(row["headers"]) or {}).items()
            if not str(k).lower().startswith("webhook-")
        }
        sigs = " ".join(sign(s, msg_id, timestamp, body) for s in await self.webhook_secrets())
        headers.update(
            {
                "content-type": "application/json",
                "user-agent": "Runyard-Webhooks",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sigs,
            }
        )
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        wait: float | None = None
        try:
            resp = await send(
                "POST",
                row["url"],
                headers=headers,
                body=body,
                policy=self.outbound_policy,
                connections=connections,
            )
            status = resp.status
            if 300 <= status < 400:
                error = f"redirect ({status}) to {resp.headers.get('location', '?')} not followed"
            elif not 200 <= status < 300:
                error = f"the receiver answered {status}"
                wait = retry_after(resp.headers, time.time())
        except OutboundError as exc:
            error = f"{exc.code}: {exc.message}"
        latency_ms = (time.monotonic() - started) * 1000
        attempt = int(row["attempts"])
        delay: float | None = None
        if status is not None and 200 <= status < 300:
            state = "delivered"
        elif status == 410:
            state = "stopped"
        else:
            delay = retry_delay(attempt, retry_scale())
            state = "failed" if delay is None else "pending"
            if wait is not None and delay is not None:
                delay = wait
        values = {
            "id": row["id"],
            "run_id": row["run_id"],
            "url": row["url"],
            "owner": owner,
            "attempt": attempt,
            "state": state,
            "status_code": status,
            "error": error,
            "latency_ms": latency_ms,
            "delay_s": delay if state == "pending" else 0.0,
        }
        store = self.core.store
        # (to the writing thread: the loop goes on sending while a group of them commits)
        recorded = await self.core.write(store.finish_delivery_txn, values, inline=False)
        if state == "stopped":  # (a 410 stops the schedule's callback too, recorded or not)
            run = await self.core.read(store.get_run, row["run_id"])
            if run.schedule_id is not None:
                await self.core.write(store.stop_schedule_callback_txn, run.schedule_id, row["url"])
        return state if recorded else "lost"
