"""Changing runs: cancel, pause, resume, continue, fork; events; retention."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import jsonutil, telemetry
from ..errors import CapacityExceeded, InvalidInput, RunNotFound, WorkflowNotFound
from ..models import Run, RunStatus
from ..rules import JSON_DEPTH_MAX, check_event_id, check_run_id, generate_run_id, invalid
from ..schemas import finite
from ..store import RunFilter
from ..store.tx import Tx
from .core import Core
from .handles import RunHandle
from .run_spans import record_run_ends
from .starting import StartMixin, StartRequest, validate_against_schema


class ControlMixin(StartMixin):
    """What a client may do to runs; every change is announced by the store's commit."""

    core: Core

    async def _transition(
        self, fn: Callable[[Tx, RunFilter], list[str]], filt: RunFilter, run_id: str | None
    ) -> tuple[list[str], Run | None]:
        """Apply ``fn`` to the runs ``filt`` selects; with ``run_id``, also that run as the
        transition left it, read in the same transaction (a worker may move it on at once)."""
        store = self.core.store

        def txn(tx: Tx, filt: RunFilter) -> tuple[list[str], Run | None]:
            return fn(tx, filt), store.get_run(tx, run_id) if run_id is not None else None

        single = filt.ids is not None and len(filt.ids) <= 1
        return await self.core.write(txn, filt, inline=single)

    async def _transition_one(self, fn: Callable[[Tx, RunFilter], list[str]], run_id: str) -> Run:
        _, run = await self._transition(fn, RunFilter(ids=[run_id], single=True), run_id)
        assert run is not None
        return run

    async def cancel(
        self,
        run_id: str | None = None,
        *,
        ids: Sequence[str] | None = None,
        workflow: str | None = None,
        prefix: str | None = None,
        url_prefix: str | None = None,
        all: bool = False,
    ) -> list[str]:
        """Cancel one run, a list, every run of a workflow, of an id prefix or of a URL
        prefix (HTTP-target runs whose URL starts with it), or ``all`` non-terminal runs;
        the ids canceled."""
        single = run_id is not None
        if run_id is not None:
            ids = [run_id]
        filt = RunFilter(
            ids=ids,
            workflow=workflow,
            prefix=prefix,
            url_prefix=url_prefix,
            all=all,
            single=single,
        )
        canceled, _ = await self._transition(self.core.store.cancel_txn, filt, None)
        # Their run spans, where this process traces (nothing read otherwise).
        await record_run_ends(self.core, canceled, RunStatus.CANCELED)
        return canceled

    async def pause(self, run_id: str) -> Run:
        """Stop the run at its next step boundary; the run as the pause left it."""
        return await self._transition_one(self.core.store.pause_txn, run_id)

    async def resume(self, run_id: str) -> Run:
        """Continue a PAUSED, FAILED, CANCELED or CRASHED run from its last checkpoint;
        the run as the resume left it: QUEUED, or RUNNING (its `waiting_for` says on
        what) when it goes back to a sleep, an event wait or a backoff not yet over."""
        return await self._transition_one(self.core.store.resume_txn, run_id)

    async def continue_(self, run_id: str) -> RunHandle:
        """Start the next iteration of a finished (incremental) run."""
        row = await self.core.write(self.core.store.continue_txn, run_id)
        return self._handle(run_id, created=False, row=row)

    async def fork(
        self,
        run_id: str,
        from_step: int | str,
        *,
        new_run_id: str | None = None,
        input: Any = None,
        version: str | None = None,
    ) -> RunHandle:
        """A new run that reuses ``run_id``'s checkpoints before ``from_step`` (a position
        as listed by :meth:`steps`, from 1 to one past the last, or a step name) and
        executes from there, with a new ``input`` (validated as a start's) or another
        registered ``version`` of the workflow if given. A ``new_run_id`` that exists
        already returns that run (no second run, as for :meth:`start`)."""
        source = await self.get_run(run_id)
        position = from_step
        if isinstance(from_step, str):
            matches = [s.position for s in await self.steps(run_id) if s.name == from_step]
            if not matches:
                raise invalid(
                    "from_step", f"run {run_id} has no step named {from_step!r}", "no such step"
                )
            position = min(matches)
        if isinstance(position, bool) or not isinstance(position, int) or position < 1:
            raise invalid(
                "from_step", "from_step must be a position >= 1 or a step name", "invalid"
            )
        new_id = (
            check_run_id(new_run_id, "new_run_id") if new_run_id is not None else generate_run_id()
        )
        text = await self._fork_input(source, input, version)
        store = self.core.store
        _row, created = await self.core.write(
            # (a run of its own: its own trace, not the source's)
            store.fork_txn,
            run_id,
            new_id,
            position,
            text,
            version,
            telemetry.new_run_trace(),
        )
        return self._handle(new_id, created)

    async def _fork_input(self, source: Run, input: Any, version: str | None) -> str | None:
        """A fork's new input as stored (None: the source's inputs), checked against the
        workflow version the fork runs, which must be registered."""
        if input is None and version is None:
            return None
        target = version or source.workflow_version
        wf = self.core.local_workflow(source.workflow, target)
        published = None if wf is not None else await self.published(source.workflow, target)
        if wf is None and published is None:
            whose = "" if version is not None else " (the source run's)"
            raise WorkflowNotFound(
                f"workflow {source.workflow!r} has no registered version {target!r}{whose}",
                details=[{"field": "version", "error": "unknown version"}],
            )
        if input is None:
            return None
        value = jsonutil.to_jsonable(input)
        text = jsonutil.dumps(value, what="input", max_depth=JSON_DEPTH_MAX)
        if wf is not None:
            wf.validate_input(value, "input")
        elif published is not None:
            validate_against_schema(source.workflow, published[1], value, "input")
        return text

    async def notify(self, event_id: str, data: Any = None) -> list[str]:
        """Store event ``event_id`` and wake the runs waiting for it; their ids."""
        check_event_id(event_id)
        text = jsonutil.dumps(data, what="data", max_depth=JSON_DEPTH_MAX)
        return await self.core.write(self.core.store.notify_txn, event_id, text)

    async def check_capacity(self, req: StartRequest) -> None:
        """For a live trigger: a run whose flow-control key is saturated would just sit
        QUEUED while the client waits, so it is refused (:class:`CapacityExceeded`)
        instead. An idempotent retry (its ``run_id`` exists) starts nothing: no check."""
        if req.run_id is not None:
            with contextlib.suppress(RunNotFound):
                await self.get_run(req.run_id)
                return
        fc = req.flow_control
        if fc is None:
            # (What start() takes too: no read of the workflow's record per request.)
            defaults = await self.run_defaults(req.workflow, req.version)
            if defaults is None:
                return  # start() names the unknown workflow
            fc = defaults.flow_control
        if fc is not None and fc.key is not None:
            await self.check_flow_capacity(fc.key)

    async def check_flow_capacity(self, key: str) -> None:
        """:class:`CapacityExceeded` (429, with the seconds to wait) when flow-control
        ``key`` could not start one more item now. A hint, not a reservation: another
        process may take the slot between this check and the claim."""
        wait_s = await self.core.read(self.core.store.flow_wait, key)
        if wait_s is not None:
            raise CapacityExceeded(
                f"flow-control key {key!r} has no capacity right now; retry shortly",
                retry_after=wait_s,
                details={"flow_key": key},
            )

    async def purge(self, older_than_days: float | None = None, *, batch: int | None = None) -> int:
        """Delete the runs that ended more than ``older_than_days`` ago (default
        ``RUNYARD_RETENTION_DAYS``) with everything they own, ``batch`` runs a transaction
        (default: the backend's, see :mod:`runyard.store.retention`); how many runs were
        deleted. Runs that have not ended, or still have work to do, are kept. Events
        notified before the cutoff are deleted too."""
        core = self.core
        store = core.store
        days = core.settings.retention_days if older_than_days is None else older_than_days
        finite(days, "older_than_days")
        batch = store.purge_batch if batch is None else batch
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise InvalidInput(
                "batch must be an integer >= 1",
                details=[{"field": "batch", "error": "not an integer >= 1"}],
            )
        cutoff = await core.read(store.now, inline=True) - days * 86400
        while await core.write(store.purge_events_txn, cutoff, batch, inline=False) == batch:
            pass  # (fewer: the oldest left are newer than the cutoff)
        total = 0
        while True:
            started = time.monotonic()
            n = await core.write(store.purge_txn, cutoff, batch, inline=False)
            total += n
            if n < batch:
                return total
            await asyncio.sleep((time.monotonic() - started) * store.purge_rest)
