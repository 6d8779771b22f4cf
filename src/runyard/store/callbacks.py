"""Callback messages and their deliveries (mixed into :class:`~runyard.store.base.Store`):
the rows. What goes in a message, when, and how it is sent live in
:mod:`runyard.service.callbacks`, which calls these inside its transactions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import jsonutil
from .tx import Later, Row, Tx

#: Announced (on the channel of stopped runs, which every process hears) when a run with
#: a callback is stored or a message redelivered: every delivery loop looks now (one that
#: does not hear of every run's changes yet too), not at its backstop. No run id looks
#: like it.
CALLBACK_WORK = "!callbacks"


def send_run_callback(tx: Tx, run_id: str, callback: Mapping[str, Any]) -> None:
    """Store a new run's callback (an existing run keeps its own) and announce it."""
    tx.send(
        "insert_run_callback",
        {
            "run_id": run_id,
            "url": callback["url"],
            "headers": jsonutil.dumps(callback.get("headers") or {}),
        },
    )
    tx.announce_run(CALLBACK_WORK, stop=True)


class CallbacksStoreMixin:
    """The SQL of callbacks (``*callback*``, ``*deliver*``, ``*webhook_secret*`` queries)."""

    def callback_open_runs(self, tx: Tx, limit: int) -> list[Row]:
        return tx.q("callback_open_runs", {"limit": limit})

    def callback_outputs(self, tx: Tx, run_id: str, after: int, limit: int) -> list[Row]:
        return tx.q("callback_outputs", {"run_id": run_id, "after": after, "limit": limit})

    def callback_inputs(self, tx: Tx, run_id: str) -> list[Row]:
        return tx.q("callback_inputs", {"run_id": run_id})

    def advance_callback(self, tx: Tx, run_id: str, cursor: int, open_: bool) -> None:
        tx.exec("advance_callback", {"run_id": run_id, "cursor": cursor, "open": open_})

    def insert_delivery(self, tx: Tx, values: Mapping[str, Any]) -> None:
        tx.exec("insert_delivery", values)

    def claim_deliveries_txn(self, tx: Tx, owner: str, lease_s: float, limit: int) -> list[Row]:
        return tx.q("claim_deliveries", {"owner": owner, "lease_s": lease_s, "limit": limit})

    def next_delivery_due(self, tx: Tx) -> float | None:
        row = tx.q1("next_delivery_due")
        return None if row is None or row["wait_s"] is None else float(row["wait_s"])

    def callback_work(self, tx: Tx) -> tuple[bool, float | None]:
        """Whether a run's callback is open; seconds until the next pending message."""
        row = tx.q1("callback_work")
        assert row is not None
        wait = row["wait_s"]
        return bool(row["open_runs"]), None if wait is None else float(wait)

    def finish_delivery_txn(self, tx: Tx, values: Mapping[str, Any]) -> Later[bool]:
        """Record an attempt and its outcome (with a 410, stop the run's other messages
        to that URL and its callback, whoever holds them); False once read if the lease
        was lost (the attempt and its outcome not written). Sent without waiting: the
        attempts of a group travel together (one round trip on PostgreSQL)."""
        tx.send("insert_delivery_attempt", values)
        done = tx.send("finish_delivery", values)
        if values["state"] == "stopped":
            tx.send("stop_run_deliveries", values)
            tx.send("stop_run_callback", values)
        return Later(lambda: done.one() is not None)

    def stop_schedule_callback_txn(self, tx: Tx, schedule_id: str, url: str) -> bool:
        row = tx.q1("get_schedule", {"id": schedule_id})
        if row is None:
            return False
        spec = jsonutil.loads(row["spec"])
        cb = spec.get("callback") if isinstance(spec, dict) else None
        if not isinstance(cb, dict) or cb.get("url") != url:
            return False
        spec["callback"] = None
        tx.exec("stop_schedule_callback", {"id": schedule_id, "spec": jsonutil.dumps(spec)})
        return True

    def list_deliveries(self, tx: Tx, run_id: str, limit: int) -> tuple[list[Row], list[Row]]:
        return (
            tx.q("list_deliveries", {"run_id": run_id, "limit": limit}),
            tx.q("list_delivery_attempts", {"run_id": run_id}),
        )

    def redeliver_txn(self, tx: Tx, run_id: str, delivery_id: int) -> bool:
        found = tx.q1("redeliver", {"run_id": run_id, "id": delivery_id}) is not None
        if found:
            tx.announce_run(CALLBACK_WORK, stop=True)
        return found

    def webhook_secrets(self, tx: Tx) -> list[Row]:
        return tx.q("webhook_secrets")

    def first_webhook_secret_txn(self, tx: Tx, secret: str) -> None:
        tx.exec("insert_first_webhook_secret", {"secret": secret})

    def add_webhook_secret_txn(self, tx: Tx, secret: str, grace_s: float | None) -> int:
        """Store ``secret``; the others expire after ``grace_s`` (None: they stay)."""
        row = tx.q1("insert_webhook_secret", {"secret": secret})
        assert row is not None
        if grace_s is not None:
            tx.exec("retire_webhook_secrets", {"grace_s": grace_s, "keep": row["id"]})
        return int(row["id"])
