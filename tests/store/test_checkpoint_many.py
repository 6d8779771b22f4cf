"""Checkpoints of several executions written together: each fenced on its own."""

from __future__ import annotations

from runyard import jsonutil
from runyard.models import ItemState, NewInput, NewRun
from runyard.store import Checkpoint, Fence, open_store
from runyard.store.dbexec import DbExecutor
from runyard.store.records import CheckpointWrite


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
            CheckpointWrite(
                fences["a"],
                1,
                [Checkpoint(1, "s1", "step", result="1"), Checkpoint(2, "s2", "step", result="2")],
            ),
            CheckpointWrite(stale, 1, [Checkpoint(1, "s1", "step", result="zombie")]),
            CheckpointWrite(fences["c"], 1, [Checkpoint(1, "s1", "step", result="3")]),
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


# Texts a checkpoint must give back exactly: quotes, backslashes, a literal backslash-u0000
# (legal: not a NUL), non-ASCII, a long string.
TRICKY = [
    'say "hi" \\ back',
    "\\u0000 is not a NUL here",
    "héllo wörld ✓ 𝄞 中文",
    "x" * 20_000,
]


def test_checkpoint_texts_and_times_come_back_exactly(db_url: str) -> None:
    """Through the group write, the single write and the outcome with its last
    checkpoints: every text, error, attempt count and start time as written."""
    db = DbExecutor(open_store(db_url))
    st = db.store
    try:
        for run_id in ("t1", "t2"):
            new = NewRun(
                id=run_id, workflow="wf", workflow_version="1", inputs=[NewInput(input=None)]
            )
            db.write_sync(st.create_run_txn, new)
        claimed = db.write_sync(st.claim_txn, "w1", ["wf@1"], 10, 30.0, True)
        fences = {c.fence.run_id: c.fence for c in claimed}
        started = 1795333333.123456789
        cps = [
            Checkpoint(
                i + 1,
                f"s{i + 1} {text[:20]}",
                "step",
                result=jsonutil.dumps(text),
                attempts=i + 1,
                started_at=started + i,
            )
            for i, text in enumerate(TRICKY)
        ]
        failed = Checkpoint(
            len(cps) + 1,
            "broke",
            "step",
            error=jsonutil.dumps({"message": TRICKY[2]}),
            attempts=3,
            started_at=started,
        )
        many = [
            CheckpointWrite(fences["t1"], 1, cps[:2]),
            CheckpointWrite(fences["t2"], 1, cps[:2]),
        ]
        assert db.write_sync(st.checkpoint_many_txn, many) == ["RUNNING", "RUNNING"]
        assert db.write_sync(st.checkpoint_txn, fences["t1"], 1, cps[2:3]) == "RUNNING"
        done = db.write_sync(
            st.complete_item_txn,
            fences["t1"],
            1,
            [cps[3], failed],
            ItemState.COMPLETED,
            jsonutil.dumps(TRICKY),
            None,
        )
        assert done == "SUCCEEDED"
        steps = db.read_sync(st.get_steps, "t1")
        assert [(s.position, s.result, s.attempts, s.started_at) for s in steps[:4]] == [
            (i + 1, text, i + 1, started + i) for i, text in enumerate(TRICKY)
        ]
        assert steps[0].name == f"s1 {TRICKY[0][:20]}"
        assert (steps[4].status, steps[4].error, steps[4].attempts) == (
            "failed",
            {"message": TRICKY[2]},
            3,
        )
        assert [s.result for s in db.read_sync(st.get_steps, "t2")] == TRICKY[:2]
        assert db.read_sync(st.get_run, "t1").result == TRICKY
    finally:
        db.close()
