"""The store's observer (what ``runyard bench`` counts statements with): told of each
named statement once, however it was run (``q`` built on ``send`` or the reverse,
``send_many`` once a row), of each transaction, and of each pipeline sync; unset, told
of nothing."""

from __future__ import annotations

import collections
from typing import Any

from runyard.store import open_store
from runyard.store.tx import Tx


class Recorder:
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.writes: list[bool] = []
        self.syncs = 0

    def statements(self, name: str, count: int) -> None:
        self.counts[name] += count

    def transaction(self, write: bool) -> None:
        self.writes.append(write)

    def pipeline_sync(self) -> None:
        self.syncs += 1


def test_observer_counts_statements_and_transactions(db_url: str) -> None:
    store = open_store(db_url)
    store.upgrade()
    conn = store.connect()
    rec = Recorder()
    try:
        with store.transaction(conn, write=True) as tx:
            tx.q1("get_run", {"id": "run_unseen"})  # not observed yet
        store.observer = rec
        with store.transaction(conn, write=False) as tx:
            assert tx.q1("get_run", {"id": "run_a"}) is None
            assert tx.send("get_run", {"id": "run_b"}).rows() == []
        with store.transaction(conn, write=True) as tx:
            assert tx.q("get_run", {"id": "run_c"}) == []  # pipelined on PostgreSQL
            sent = tx.send("get_run", {"id": "run_d"})
            tx.send_many(
                "record_migration",
                [{"version": 900_001, "name": "one"}, {"version": 900_002, "name": "two"}],
            )
            tx.send_many("record_migration", [])
            assert sent.rows() == []
            assert tx.exec("get_run", {"id": "run_e"}) in (0, -1)
        store.observer = None
        with store.transaction(conn, write=True) as tx:
            tx.q("get_run", {"id": "run_unseen"})
    finally:
        store.observer = None
        store.close_connection(conn)
        store.close()
    assert dict(rec.counts) == {"get_run": 5, "record_migration": 2}
    assert rec.writes == [False, True]


class _Cursor:
    pgresult = None  # no answer yet: reading waits for the pipeline
    rowcount = 3

    def execute(self, sql: str, params: Any) -> None:
        pass


class _Conn:
    def cursor(self) -> _Cursor:
        return _Cursor()


class _Pipeline:
    def __init__(self) -> None:
        self.syncs = 0

    def sync(self) -> None:
        self.syncs += 1


def test_observer_hears_each_pipeline_sync(db_url: str) -> None:
    store = open_store(db_url)
    rec = Recorder()
    try:
        # A pipelined write's cursor and connection, whose answers never arrive by themselves.
        cur: Any = _Cursor()
        conn: Any = _Conn()
        pipe = _Pipeline()
        assert Tx(store, cur, conn, pipe).exec("get_run", {"id": "run_a"}) == 3
        assert (pipe.syncs, rec.syncs) == (1, 0)
        store.observer = rec
        tx = Tx(store, cur, conn, pipe)
        assert tx.exec("get_run", {"id": "run_a"}) == 3
        assert tx.send("get_run", {"id": "run_b"}).rowcount == 3
        assert (pipe.syncs, rec.syncs) == (3, 2)
        assert dict(rec.counts) == {"get_run": 2}
    finally:
        store.observer = None
        store.close()
