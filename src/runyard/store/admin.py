"""API keys, tasks, usage and workers (mixed into :class:`~runyard.store.base.Store`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import jsonutil
from ..errors import NotFound
from .tx import Row, Tx


class AdminMixin:
    """The records the HTTP API manages besides runs."""

    # -- API keys (stored as digests; the key itself is shown once) ---------------------

    def create_api_key_txn(
        self, tx: Tx, key_id: str, name: str | None, digest: str, scopes: Sequence[str]
    ) -> Row:
        row = tx.q1(
            "insert_api_key",
            {"id": key_id, "name": name, "digest": digest, "scopes": jsonutil.dumps(list(scopes))},
        )
        assert row is not None
        return row

    def list_api_keys(self, tx: Tx) -> list[Row]:
        return tx.q("list_api_keys")

    def revoke_api_key_txn(self, tx: Tx, key_id: str) -> Row:
        row = tx.q1("revoke_api_key", {"id": key_id})
        if row is None:
            raise NotFound(f"no API key {key_id!r}")
        return row

    def find_api_key(self, tx: Tx, digest: str) -> Row | None:
        """The live (not revoked) key with this digest."""
        return tx.q1("find_api_key", {"digest": digest})

    def api_key_issued(self, tx: Tx, digest: str) -> bool:
        """Whether a key with this digest was ever issued (revoked or not)."""
        return tx.q1("api_key_issued", {"digest": digest}) is not None

    def touch_api_key_txn(self, tx: Tx, key_id: str) -> None:
        tx.exec("touch_api_key", {"id": key_id})

    # -- tasks: saved run templates --------------------------------------------------------

    def create_task_txn(
        self,
        tx: Tx,
        task_id: str,
        name: str | None,
        workflow: str,
        input: str | None,
        options: dict[str, Any],
    ) -> Row:
        row = tx.q1(
            "insert_task",
            {
                "id": task_id,
                "name": name,
                "workflow": workflow,
                "input": input,
                "options": jsonutil.dumps(options),
            },
        )
        if row is None:
            existing = tx.q1("get_task", {"id": task_id})
            assert existing is not None
            return existing
        return row

    def get_task(self, tx: Tx, task_id: str) -> Row:
        row = tx.q1("get_task", {"id": task_id})
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return row

    def list_tasks(self, tx: Tx, after_id: str | None, limit: int) -> list[Row]:
        return tx.q("list_tasks", {"after_id": after_id, "limit": limit})

    def update_task_txn(
        self,
        tx: Tx,
        task_id: str,
        name: str | None,
        workflow: str,
        input: str | None,
        options: dict[str, Any],
    ) -> Row:
        row = tx.q1(
            "update_task",
            {
                "id": task_id,
                "name": name,
                "workflow": workflow,
                "input": input,
                "options": jsonutil.dumps(options),
            },
        )
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return row

    def delete_task_txn(self, tx: Tx, task_id: str) -> None:
        if not tx.q1("delete_task", {"id": task_id}):
            raise NotFound(f"no task {task_id!r}")

    # -- usage and workers -----------------------------------------------------------------

    def usage(self, tx: Tx, since: float, until: float, workflow: str | None) -> list[Row]:
        """Credits summed by day, workflow and action over ``[since, until)``."""
        return tx.q("usage", {"since": since, "until": until, "workflow": workflow})

    def live_workers(self, tx: Tx, seen_within_s: float) -> list[Row]:
        """Workers that heartbeated within ``seen_within_s`` and have not stopped."""
        return tx.q("live_workers", {"seen_within_s": seen_within_s})
