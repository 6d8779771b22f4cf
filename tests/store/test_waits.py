"""An event wait ends at the earlier of its own deadline and its run's, and with the run
when it crashes."""

from __future__ import annotations

import time

from runyard.models import NewInput, NewRun
from runyard.store import Checkpoint, Fence, Tx, open_store
from runyard.store.dbexec import DbExecutor
from tests.waiting import wait_until


def _due_at(tx: Tx, run_id: str) -> float:
    params = {"run_id": run_id, "kinds": ["input"], "state": None, "limit": 1, "offset": 0}
    return float(tx.q("list_items", params)[0]["due_at"])


def test_a_wait_is_handed_back_until_the_runs_deadline_and_ends_with_it(db_url: str) -> None:
    db = DbExecutor(open_store(db_url))
    st = db.store
    try:
        for run_id in ("early", "late"):
            new = NewRun(
                id=run_id, workflow="wf", workflow_version="1", inputs=[NewInput(input=None)]
            )
            db.write_sync(st.create_run_txn, new)
        claimed = db.write_sync(st.claim_txn, "w1", ["wf@1"], 10, 30.0, True)
        fences: dict[str, Fence] = {c.fence.run_id: c.fence for c in claimed}
        now = time.time()
        wait = [Checkpoint(1, "approve", "wait", status="waiting", result="{}")]

        def begin(run_id: str, run_deadline: float) -> tuple[str, object]:
            return db.write_sync(
                st.begin_wait_txn,
                fences[run_id],
                1,
                wait,
                1,
                "approve",
                [f"ev:{run_id}"],
                now - 300,
                now + 60,
                run_deadline,
            )

        # The run's deadline comes first: the item is due again then, not at the wait's.
        assert begin("early", now + 5) == ("suspended", None)
        assert abs(db.read_sync(_due_at, "early") - (now + 5)) < 0.01
        assert [w.run_id for w in db.read_sync(st.get_waiters, "ev:early")] == ["early"]
        # The run's deadline has passed: the run is over, whatever the wait's own says.
        assert begin("late", now - 1) == ("run_timeout", None)
        assert db.read_sync(st.get_waiters, "ev:late") == []
    finally:
        db.close()


def test_a_run_that_crashes_after_its_wait_leaves_no_waiter(db_url: str) -> None:
    """A wait handed back, its item claimed again when due, its worker dead (the lease
    expires) past max_recovery_attempts: the run ends CRASHED and a notify wakes nothing."""
    db = DbExecutor(open_store(db_url))
    st = db.store
    try:
        new = NewRun(
            id="doomed",
            workflow="wf",
            workflow_version="1",
            inputs=[NewInput(input=None)],
            max_recovery_attempts=0,
        )
        db.write_sync(st.create_run_txn, new)
        (claimed,) = db.write_sync(st.claim_txn, "w1", ["wf@1"], 10, 30.0, True)
        now = time.time()
        wait = [Checkpoint(1, "approve", "wait", status="waiting", result="{}")]
        outcome = db.write_sync(
            st.begin_wait_txn,
            claimed.fence,
            1,
            wait,
            1,
            "approve",
            ["ev:doomed"],
            now - 1,
            now + 0.3,
        )
        assert outcome == ("suspended", None)
        assert [w.run_id for w in db.read_sync(st.get_waiters, "ev:doomed")] == ["doomed"]
        # Due again when the wait's deadline passes: claimed with a lease that expires.
        wait_until(
            lambda: db.write_sync(st.claim_txn, "w2", ["wf@1"], 10, 0.05, True),
            timeout=5,
            interval=0.02,
            what="the item claimed again once the wait's deadline passed",
        )
        time.sleep(0.1)  # the claim's lease of 50 ms expires
        assert db.write_sync(st.recover_txn) == ["doomed"]
        assert db.read_sync(st.get_run, "doomed").status.value == "CRASHED"
        assert db.read_sync(st.get_waiters, "ev:doomed") == []
    finally:
        db.close()
