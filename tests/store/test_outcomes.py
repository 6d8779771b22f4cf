"""A run's outcome follows from its inputs' outcomes, the same through every way the
store writes an item's outcome (on PostgreSQL: one statement for a group of outcomes, or
the general path for an outcome whose last checkpoints have side effects)."""

from __future__ import annotations

from runyard import jsonutil
from runyard.models import ItemState, NewInput, NewRun
from runyard.store import Checkpoint, open_store
from runyard.store.dbexec import DbExecutor


def test_only_discarded_inputs_end_the_run_invalid_on_every_outcome_path(db_url: str) -> None:
    db = DbExecutor(open_store(db_url))
    st = db.store
    try:
        for run_id in ("grouped", "general"):
            new = NewRun(
                id=run_id,
                workflow="wf",
                workflow_version="1",
                inputs=[NewInput(input=1), NewInput(input=2)],
            )
            db.write_sync(st.create_run_txn, new)
        claimed = db.write_sync(st.claim_txn, "w1", ["wf@1"], 10, 30.0, True)
        assert len(claimed) == 4
        error = jsonutil.dumps({"code": "invalid_input", "message": "input.n: must be even"})
        answers: dict[str, list[str | None]] = {"grouped": [], "general": []}
        for c in sorted(claimed, key=lambda c: (c.fence.run_id, c.fence.idx)):
            run_id = c.fence.run_id
            # A charge among the last checkpoints takes PostgreSQL's general path.
            pending = (
                [Checkpoint(1, "charge:x", "charge", credit=("x", 1.0))]
                if run_id == "general"
                else []
            )
            answers[run_id].append(
                db.write_sync(
                    st.complete_item_txn, c.fence, 1, pending, ItemState.DISCARDED, None, error
                )
            )
        assert answers == {"grouped": ["RUNNING", "INVALID"], "general": ["RUNNING", "INVALID"]}
        runs = {run_id: db.read_sync(st.get_run, run_id) for run_id in answers}
        for run in runs.values():
            assert run.status == "INVALID" and run.finished_at is not None
            assert run.error == {
                "code": "invalid_input",
                "message": "all 2 inputs were discarded: none matches the workflow's input "
                "type (each item has its error)",
                "discarded": 2,
            }
            assert run.result == [None, None]
    finally:
        db.close()
