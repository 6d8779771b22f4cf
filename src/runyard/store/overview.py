"""The reads of the dashboard's overview, each bounded whatever the history holds (run in
a read transaction through ``Core.read``): runs not ended by status and by workflow
(counted up to a cap), runs ended per time bucket (a range of the finish-time index) and
the items workers hold (a page of the lease index)."""

from __future__ import annotations

from ..models import EndedCount, HeldItem, OpenCount
from .tx import Tx

#: The statuses of runs not ended, as the columns of overview_workflow_queues name them.
OPEN_STATUSES = ("SCHEDULED", "QUEUED", "RUNNING", "PAUSED")
#: Where the counts of the SQL stop (written out in it, where PostgreSQL's planner sees it).
COUNT_STOP = 100_001


def open_runs(tx: Tx, stop: int) -> list[OpenCount]:
    """Runs not ended, by status, each counted until ``stop`` (at most :data:`COUNT_STOP`)."""
    return [
        OpenCount(None, str(r["status"]), min(int(r["n"]), stop))
        for r in tx.q("overview_open_runs")
    ]


def workflow_queues(tx: Tx, stop: int) -> list[OpenCount]:
    """Runs not ended by published workflow and status, each counted until ``stop`` (at
    most :data:`COUNT_STOP`)."""
    return [
        OpenCount(str(r["workflow"]), status, min(int(r[status.lower()]), stop))
        for r in tx.q("overview_workflow_queues")
        for status in OPEN_STATUSES
    ]


def ended_runs(tx: Tx, since: float, until: float, bucket_s: float) -> list[EndedCount]:
    """Runs that ended in ``[since, until)``, by bucket of ``bucket_s`` seconds and status."""
    rows = tx.q("overview_ended_runs", {"since": since, "until": until, "bucket_s": bucket_s})
    return [EndedCount(int(r["bucket"]), str(r["status"]), int(r["n"])) for r in rows]


def held_items(tx: Tx, limit: int) -> list[HeldItem]:
    """Items held by workers now, soonest lease expiry first: up to ``limit``."""
    return [
        HeldItem(
            owner=str(r["owner"]),
            run_id=str(r["run_id"]),
            item_idx=int(r["idx"]),
            workflow=str(r["workflow"]),
            name=r["name"],
            started_at=r["started_at"],
            lease_expires_at=r["lease_expires_at"],
        )
        for r in tx.q("overview_leases", {"limit": limit})
    ]
