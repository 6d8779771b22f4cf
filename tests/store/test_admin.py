"""API keys, tasks, usage and workers in the store, on both backends."""

from __future__ import annotations

import time

import pytest

from runyard import NotFound
from runyard.store import open_store
from runyard.store.dbexec import DbExecutor


@pytest.fixture
def db(db_url: str):  # type: ignore[no-untyped-def]
    ex = DbExecutor(open_store(db_url))
    yield ex
    ex.close()


def test_api_keys(db: DbExecutor) -> None:
    st = db.store
    db.write_sync(st.create_api_key_txn, "key_1", "ci", "d1" * 32, ["read", "write"])
    db.write_sync(st.create_api_key_txn, "key_2", None, "d2" * 32, ["admin"])
    found = db.read_sync(st.find_api_key, "d1" * 32)
    assert found is not None and found.id == "key_1"
    assert [k.id for k in db.read_sync(st.list_api_keys)] == ["key_1", "key_2"]
    db.write_sync(st.revoke_api_key_txn, "key_1")
    assert db.read_sync(st.find_api_key, "d1" * 32) is None  # revocation is immediate
    with pytest.raises(NotFound):
        db.write_sync(st.revoke_api_key_txn, "key_9")


def test_tasks_crud(db: DbExecutor) -> None:
    st = db.store
    task = db.write_sync(st.create_task_txn, "t1", "nightly", "wf", '{"a":1}', {"priority": 2})
    assert task.workflow == "wf"
    db.write_sync(st.create_task_txn, "t2", None, "wf", None, {})
    assert [t.id for t in db.read_sync(st.list_tasks, None, 10)] == ["t1", "t2"]
    assert [t.id for t in db.read_sync(st.list_tasks, "t1", 10)] == ["t2"]
    db.write_sync(st.update_task_txn, "t1", "renamed", "wf2", None, {})
    assert db.read_sync(st.get_task, "t1").workflow == "wf2"
    db.write_sync(st.delete_task_txn, "t1")
    with pytest.raises(NotFound):
        db.read_sync(st.get_task, "t1")
    with pytest.raises(NotFound):
        db.write_sync(st.delete_task_txn, "t1")


def test_usage_and_workers(db: DbExecutor) -> None:
    st = db.store

    def seed(tx):  # type: ignore[no-untyped-def]
        tx.cursor.execute(
            "INSERT INTO runs (id, workflow, workflow_version, status, input_count, item_count)"
            " VALUES ('r1', 'wf', '1', 'SUCCEEDED', 1, 1)"
        )
        for pos, (action, amount) in enumerate([("lookup", 2.0), ("lookup", 3.0), ("ai", 1.5)]):
            tx.cursor.execute(
                "INSERT INTO credits (run_id, item_idx, iteration, position, workflow, action,"
                f" amount) VALUES ('r1', 0, 1, {pos + 1}, 'wf', '{action}', {amount})"
            )

    db.write_sync(seed)
    now = time.time()
    rows = db.read_sync(st.usage, now - 3600, now + 3600, None)
    assert {(r.action, r.credits) for r in rows} == {("ai", 1.5), ("lookup", 5.0)}
    assert db.read_sync(st.get_run, "r1").credits == 6.5  # the trigger kept the sum
    assert db.read_sync(st.usage, now - 3600, now + 3600, "other") == []
    db.write_sync(st.register_worker_txn, "w1", "host", 1, 4, ["wf@1"])
    assert [w.id for w in db.read_sync(st.live_workers, 60.0)] == ["w1"]
    db.write_sync(st.worker_stopped_txn, "w1")
    assert db.read_sync(st.live_workers, 60.0) == []
