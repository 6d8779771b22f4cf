"""API keys, tasks, usage and workers (mixed into :class:`~runyard.store.base.Store`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import jsonutil
from ..errors import NotFound
from ..models import ApiKey, Task, UsageLine, WorkerRecord, WorkflowRecord
from .tx import Row, Tx


def api_key_from_row(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scopes=tuple(str(s) for s in jsonutil.loads(row["scopes"]) or ()),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def task_from_row(row: Row) -> Task:
    options = jsonutil.loads(row["options"])
    return Task(
        id=row["id"],
        name=row["name"],
        workflow=row["workflow"],
        input=jsonutil.loads(row["input"]),
        options=options if isinstance(options, dict) else {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def workflow_from_row(row: Row) -> WorkflowRecord:
    options = jsonutil.loads(row["options"])
    return WorkflowRecord(
        name=row["name"],
        version=row["version"],
        description=row["description"],
        input_schema_json=row["input_schema"],
        options=options if isinstance(options, dict) else {},
        updated_at=row["updated_at"],
    )


def worker_from_row(row: Row) -> WorkerRecord:
    return WorkerRecord(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        concurrency=row["concurrency"],
        heartbeat_at=row["heartbeat_at"],
        workflows=tuple(jsonutil.loads(row["workflows"]) or ()),
    )


class AdminMixin:
    """The records the HTTP API manages besides runs."""

    # -- API keys (stored as digests; the key itself is shown once) ---------------------

    def create_api_key_txn(
        self, tx: Tx, key_id: str, name: str | None, digest: str, scopes: Sequence[str]
    ) -> None:
        tx.exec(
            "insert_api_key",
            {"id": key_id, "name": name, "digest": digest, "scopes": jsonutil.dumps(list(scopes))},
        )

    def list_api_keys(self, tx: Tx) -> list[ApiKey]:
        return [api_key_from_row(r) for r in tx.q("list_api_keys")]

    def revoke_api_key_txn(self, tx: Tx, key_id: str) -> None:
        if tx.q1("revoke_api_key", {"id": key_id}) is None:
            raise NotFound(f"no API key {key_id!r}")

    def find_api_key(self, tx: Tx, digest: str) -> ApiKey | None:
        """The live (not revoked) key with this digest."""
        row = tx.q1("find_api_key", {"digest": digest})
        return api_key_from_row(row) if row is not None else None

    def find_api_key_by_id(self, tx: Tx, key_id: str) -> tuple[ApiKey, str] | None:
        """The live (not revoked) key with this id and its digest (what a dashboard
        session is signed with)."""
        row = tx.q1("find_api_key_by_id", {"id": key_id})
        return (api_key_from_row(row), str(row["digest"])) if row is not None else None

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
    ) -> Task:
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
            return self.get_task(tx, task_id)
        return task_from_row(row)

    def get_task(self, tx: Tx, task_id: str) -> Task:
        row = tx.q1("get_task", {"id": task_id})
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return task_from_row(row)

    def list_tasks(self, tx: Tx, after_id: str | None, limit: int) -> list[Task]:
        return [
            task_from_row(r) for r in tx.q("list_tasks", {"after_id": after_id, "limit": limit})
        ]

    def update_task_txn(
        self,
        tx: Tx,
        task_id: str,
        name: str | None,
        workflow: str,
        input: str | None,
        options: dict[str, Any],
    ) -> Task:
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
        return task_from_row(row)

    def delete_task_txn(self, tx: Tx, task_id: str) -> None:
        if not tx.q1("delete_task", {"id": task_id}):
            raise NotFound(f"no task {task_id!r}")

    # -- usage and workers -----------------------------------------------------------------

    def usage(
        self,
        tx: Tx,
        since: float,
        until: float,
        workflow: str | None,
        run_id: str | None = None,
    ) -> list[UsageLine]:
        """Credits summed by day, workflow and action over ``[since, until)`` (of one run
        with ``run_id``)."""
        params = {"since": since, "until": until, "workflow": workflow, "run_id": run_id}
        rows = tx.q("usage", params)
        return [
            UsageLine(
                day=r["day"],
                workflow=r["workflow"],
                action=r["action"],
                credits=float(r["credits"]),
                charges=int(r["charges"]),
            )
            for r in rows
        ]

    def live_workers(self, tx: Tx, seen_within_s: float) -> list[WorkerRecord]:
        """Workers that heartbeated within ``seen_within_s`` and have not stopped."""
        rows = tx.q("live_workers", {"seen_within_s": seen_within_s})
        return [worker_from_row(r) for r in rows]
