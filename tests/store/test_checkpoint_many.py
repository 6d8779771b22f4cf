"""Checkpoints of several executions written together: each fenced on its own."""

from __future__ import annotations

from runyard.models import NewInput, NewRun
from runyard.store import Checkpoint, Fence, open_store
from runyard.store.dbexec import DbExecutor


def test_checkpoints_of_a_group_are_fenced_one_by_one(db_url: str) -> None:
    db = DbExecutor(open_store(db_url))
    st = db.store
    try:
        for run_id in ("a", "b", "c"):
            new = NewRun(
                id=run_id, workflow="wf", workflow_version="1", inputs=[NewInput(input=None)]
            )
            db.write_sync(st.create_run_txn, new)
        claimed = db.write_sync(st.claim_txn, "w1", ["wf@1"], 10, 30.0, True)
        fences = {c.fence.run_id: c.fence for c in claimed}
        assert set(fences) == {"a", "b", "c"}
        stale = Fence("b", 0, "w1", fences["b"].epoch - 1)  # an older claim of "b"
        calls = [
            (
                fences["a"],
                1,
                [Checkpoint(1, "s1", "step", result="1"), Checkpoint(2, "s2", "step", result="2")],
            ),
            (stale, 1, [Checkpoint(1, "s1", "step", result="zombie")]),
            (fences["c"], 1, [Checkpoint(1, "s1", "step", result="3")]),
        ]
        got = db.write_sync(st.checkpoint_many_txn, calls)
        assert got == ["RUNNING", None, "RUNNING"]
        assert [(s.name, s.result) for s in db.read_sync(st.get_steps, "a")] == [
            ("s1", 1),
            ("s2", 2),
        ]
        assert db.read_sync(st.get_steps, "b") == []  # the stale fence wrote nothing
        assert [s.result for s in db.read_sync(st.get_steps, "c")] == [3]
        # Written again (a retried group), nothing changes.
        assert db.write_sync(st.checkpoint_many_txn, calls) == ["RUNNING", None, "RUNNING"]
        assert len(db.read_sync(st.get_steps, "a")) == 2
    finally:
        db.close()
