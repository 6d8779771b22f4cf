"""What the service keeps besides runs: published workflows and the workers serving
them, tasks, usage, API keys, and the figures of the operators' pages."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import jsonutil
from .. import keys as apikeys
from ..errors import NotFound
from ..models import ApiKey, RunCounts, Task, UsageLine, WorkerRecord, WorkflowRecord
from ..rules import JSON_DEPTH_MAX, invalid
from ..schemas import InputIn, RunOptions
from .core import Core
from .starting import StartRequest, request_from_options, validate_against_schema
from .suggest import unknown_workflow

#: The period a usage report covers when not told (ending now).
USAGE_PERIOD_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Credits over ``[since, until)``: summed by action, workflow and day, and each
    (day, workflow, action) line."""

    since: float
    until: float
    total: float
    by_action: dict[str, float]
    by_workflow: dict[str, float]
    by_day: dict[str, float]
    lines: list[UsageLine]


@dataclass(frozen=True, slots=True)
class TaskChange:
    """What an update of a task gives (None: keep the stored value, but ``input`` and
    ``name`` are replaced when listed in ``given``); ``options`` are merged field by
    field into the stored ones."""

    given: frozenset[str]
    name: str | None = None
    workflow: str | None = None
    input: Any = None
    options: dict[str, Any] | None = None


class CatalogMixin:
    core: Core

    if TYPE_CHECKING:  # (runyard.service.callbacks.CallbacksMixin, beside it in Service)

        async def check_callback(
            self, callback: Any, field: str = "callback"
        ) -> dict[str, Any] | None: ...

    # -- workflows and workers ------------------------------------------------------------

    async def published_workflows(self, *, all_versions: bool = False) -> list[WorkflowRecord]:
        """What workers published, by name: the newest version of each, or every one."""
        records = await self.core.read(self.core.store.list_workflows)
        if all_versions:
            return records
        newest: list[WorkflowRecord] = []
        seen: set[str] = set()
        for record in records:  # ordered by name, newest version first
            if record.name not in seen:
                seen.add(record.name)
                newest.append(record)
        return newest

    async def published_workflow(self, name: str, version: str | None = None) -> WorkflowRecord:
        """The record published for ``name`` (its newest version unless given)."""
        record = await self.core.read(self.core.store.get_workflow, name, version)
        if record is None:
            records = await self.core.read(self.core.store.list_workflows)
            raise unknown_workflow(name, version, (r.name for r in records), "published")
        return record

    async def workers(
        self, seen_within_s: float, *, serving: WorkflowRecord | None = None
    ) -> list[WorkerRecord]:
        """Workers that heartbeated within ``seen_within_s``; with ``serving``, only those
        that serve that workflow version."""
        live = await self.core.read(self.core.store.live_workers, seen_within_s)
        if serving is None:
            return live
        return [w for w in live if serving.ref in w.workflows]

    # -- tasks ----------------------------------------------------------------------------

    async def _check_workflow(self, workflow: str, input: Any, check_input: bool) -> None:
        """The workflow is published and, when asked, ``input`` matches its schema."""
        record = await self.core.read(self.core.store.get_workflow, workflow, None)
        if record is None:
            records = await self.core.read(self.core.store.list_workflows)
            raise unknown_workflow(workflow, None, (r.name for r in records), "published")
        if check_input:
            validate_against_schema(workflow, record.input_schema_json, input, "input")

    async def create_task(
        self,
        *,
        workflow: str,
        task_id: str | None = None,
        name: str | None = None,
        input: Any = None,
        input_given: bool = False,
        options: dict[str, Any] | None = None,
    ) -> tuple[Task, bool]:
        """Save a task; ``(task, created)``. Saving an existing id again answers with the
        stored task (as a ``run_id`` does)."""
        store = self.core.store
        if task_id is not None:
            try:
                return await self.core.read(store.get_task, task_id), False
            except NotFound:
                pass
        await self._check_workflow(workflow, input, input_given)
        options = await self._checked_options(options or {})
        task_id = task_id or f"task_{int(time.time() * 1000):012x}{secrets.token_hex(4)}"
        text = (
            jsonutil.dumps(input, what="input", max_depth=JSON_DEPTH_MAX)
            if input is not None
            else None
        )
        task = await self.core.write(store.create_task_txn, task_id, name, workflow, text, options)
        return task, True

    async def _checked_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """A task's options with its callback checked by the outbound guard (422 naming
        ``options.callback.url``): each execution's run reports to it."""
        if options.get("callback") is None:
            return options
        callback = await self.check_callback(options["callback"], field="options.callback")
        return {**options, "callback": callback}

    async def task(self, task_id: str) -> Task:
        return await self.core.read(self.core.store.get_task, task_id)

    async def tasks(self, *, after: str | None = None, limit: int = 20) -> list[Task]:
        """Tasks in id order after the id ``after``: up to ``limit``."""
        return await self.core.read(self.core.store.list_tasks, after, limit)

    async def update_task(self, task_id: str, change: TaskChange) -> Task:
        store = self.core.store
        task = await self.core.read(store.get_task, task_id)
        name = change.name if "name" in change.given else task.name
        workflow = change.workflow if change.workflow is not None else task.workflow
        input = change.input if "input" in change.given else task.input
        options = await self._checked_options({**task.options, **(change.options or {})})
        if change.workflow is not None or "input" in change.given:
            await self._check_workflow(workflow, input, "input" in change.given)
        text = (
            jsonutil.dumps(input, what="input", max_depth=JSON_DEPTH_MAX)
            if input is not None
            else None
        )
        return await self.core.write(store.update_task_txn, task_id, name, workflow, text, options)

    async def delete_task(self, task_id: str) -> None:
        await self.core.write(self.core.store.delete_task_txn, task_id)

    async def task_request(
        self,
        task_id: str,
        overrides: dict[str, Any],
        *,
        input: Any = None,
        input_given: bool = False,
        inputs: Sequence[InputIn] | None = None,
        run_id: str | None = None,
        mode: str = "async",
    ) -> StartRequest:
        """The run a task's execution starts: the task's input and options, overridden by
        ``overrides`` (run options, as JSON) and by ``input`` (when given) or ``inputs``."""
        task = await self.task(task_id)
        options = RunOptions.model_validate({**task.options, **overrides})
        given = input_given or inputs is not None
        return request_from_options(
            task.workflow,
            options,
            input=input if given else task.input,
            inputs=inputs,
            run_id=run_id,
            mode=mode,
            task_id=task_id,
        )

    # -- usage ----------------------------------------------------------------------------

    async def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        workflow: str | None = None,
        earliest: float = 0.0,
        run_id: str | None = None,
    ) -> UsageReport:
        """Credits charged with ``ctx.charge`` over ``[since, until)`` (default: the 30
        days until now; never before ``earliest``). With ``run_id``, that run's credits
        only (since its beginning by default); an unknown run is RunNotFound."""
        end = time.time() if until is None else until
        if since is not None:
            start = since
        elif run_id is not None:
            start = earliest
        else:
            start = max(earliest, end - USAGE_PERIOD_S)
        if start >= end:
            raise invalid("since", "since must be before until", "not before until")
        if run_id is not None:
            await self.core.read(self.core.store.get_run, run_id)
        lines = await self.core.read(self.core.store.usage, start, end, workflow, run_id)
        by_action: dict[str, float] = defaultdict(float)
        by_workflow: dict[str, float] = defaultdict(float)
        by_day: dict[str, float] = defaultdict(float)
        for line in lines:
            by_action[line.action] += line.credits
            by_workflow[line.workflow] += line.credits
            by_day[line.day] += line.credits
        return UsageReport(
            since=start,
            until=end,
            total=sum(by_action.values()),
            by_action=dict(by_action),
            by_workflow=dict(by_workflow),
            by_day=dict(by_day),
            lines=lines,
        )

    # -- API keys -------------------------------------------------------------------------

    async def api_key(self, digest: str) -> ApiKey | None:
        """The live (not revoked) key with this digest."""
        return await self.core.read(self.core.store.find_api_key, digest, inline=True)

    async def api_key_issued(self, digest: str) -> bool:
        """Whether a key with this digest was ever issued (revoked or not)."""
        return await self.core.read(self.core.store.api_key_issued, digest, inline=True)

    async def create_api_key(self, name: str | None, scopes: Sequence[str]) -> tuple[str, str]:
        """A new key with ``scopes``, stored as a digest: ``(key id, key)``; the key is
        not kept, so this is the only time it is seen."""
        unknown = [s for s in scopes if s not in apikeys.SCOPES]
        if unknown:
            raise invalid(
                "scopes",
                f"unknown scope {unknown[0]!r}: use {', '.join(apikeys.SCOPES)}",
                "unknown scope",
            )
        key = apikeys.generate()
        key_id = apikeys.key_id(key)
        ordered = sorted(set(scopes), key=apikeys.SCOPES.index)
        store = self.core.store
        await self.core.write(store.create_api_key_txn, key_id, name, apikeys.digest(key), ordered)
        return key_id, key

    async def api_keys(self) -> list[ApiKey]:
        """Every key issued, revoked ones too (never the keys themselves)."""
        return await self.core.read(self.core.store.list_api_keys)

    async def revoke_api_key(self, key_id: str) -> None:
        """Requests with the key are refused from now on."""
        await self.core.write(self.core.store.revoke_api_key_txn, key_id)

    async def touch_api_key(self, key_id: str) -> None:
        """Record a key's use now."""
        await self.core.write(self.core.store.touch_api_key_txn, key_id)

    # -- health and metrics ---------------------------------------------------------------

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgres``."""
        return self.core.store.backend

    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the database being unavailable for a while (503, retry)."""
        return self.core.store.is_transient(exc)

    async def probe(self, timeout_s: float) -> None:
        """One round trip to the database on a connection of its own (the executor's
        retries would make a health check wait for the whole retry window); raises if it
        fails or takes longer than ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            await asyncio.to_thread(self.core.store.probe)

    async def run_counts(self, after_transition: int | None) -> RunCounts:
        """Runs not ended by status, and runs ended since ``after_transition``."""
        return await self.core.read(self.core.store.run_counts, after_transition)
