"""Retention: ended runs older than a cutoff are deleted with everything they own (mixed
into :class:`~runyard.store.base.Store`).

A run is purged with its items, steps, failed attempts, outputs, log lines, sync states,
its schedule fire's record, event waiters, callback deliveries and status transitions.
Its credits are not lost: they move to ``purged_credits`` without the run, so usage over
a period (``GET /v1/usage``) still counts them, and a run id used again later starts
with no credits of the old run.

Only a run that has ended (a terminal status) and has nothing left to do is purged: no
item owned by a worker or still to run (an ``on_failure`` hook runs after its run ended)
and no callback still to deliver. Nothing else refers to a run while it runs: a fork
copies the checkpoints and outputs it reuses when it is created, so its source may go.

Notified events older than the cutoff go too (:meth:`RetentionMixin.purge_events_txn`):
they belong to no run, and a wait sees only the events of its lookback window.

Deletes are idempotent and bounded (``limit`` runs a transaction), so every worker may
purge now and then without a leader; on PostgreSQL the runs are taken ``FOR UPDATE SKIP
LOCKED``, so workers purging at once take different runs. On SQLite a purge takes smaller
batches and rests between them (``purge_batch``, ``purge_rest``), so that claims and
checkpoints get the write lock in between.
"""

from __future__ import annotations

from .tx import Tx

#: What a run owns, deleted with it (the run's own row last).
OWNED = (
    "purge_credits",
    "purge_logs",
    "purge_outputs",
    "purge_steps",
    "purge_attempts",
    "purge_sync_states",
    "purge_schedule_fires",
    "purge_waiters",
    "purge_deliveries",
    "purge_delivery_attempts",
    "purge_run_callbacks",
    "purge_transitions",
    "purge_items",
)


class RetentionMixin:
    """Purging ended runs."""

    #: Runs one purge transaction deletes: its locks (SQLite's write lock) last that long.
    purge_batch = 100
    #: After each batch a purge rests this many times as long as the batch took: SQLite
    #: has one writer, and a purge writing without rest held off every claim (p99 of a
    #: claim 32 ms during a purge, 3 ms without). PostgreSQL's purges lock only the rows
    #: they delete, which no claim wants.
    purge_rest = 0.0

    def purge_txn(self, tx: Tx, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` runs that ended before ``cutoff`` (seconds since the
        epoch) and everything they own; how many runs were deleted."""
        ids = [r["id"] for r in tx.q("purgeable_runs", {"cutoff": cutoff, "limit": limit})]
        if not ids:
            return 0
        params = {"ids": ids}
        tx.send("archive_purged_credits", params)  # before purge_credits, in order
        for name in OWNED:
            tx.send(name, params)
        return tx.exec("purge_runs", params)

    def purge_events_txn(self, tx: Tx, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` events stored before ``cutoff``; how many were."""
        return tx.exec("purge_events", {"cutoff": cutoff, "limit": limit})
