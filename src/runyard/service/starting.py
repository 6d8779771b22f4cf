"""Starting runs: one request type, validated once, whichever front door it came through."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import jsonschema

from .. import jsonutil, telemetry
from ..engine.registry import FlowControl, RunDefaults
from ..errors import InvalidInput, NotFound, RunIdConflict
from ..http_target import HTTP_WORKFLOW
from ..models import NewInput, NewRun, RunStatus, WorkflowRecord
from ..outbound import check_url_async
from ..rules import (
    INT32_MAX,
    JSON_DEPTH_MAX,
    MODES,
    PRIORITY_MAX,
    RETRIES_MAX,
    SYNC_MODES,
    check_choice,
    check_int,
    check_run_id,
    generate_run_id,
    input_choice_problems,
    invalid,
    problems_error,
)
from ..schemas import LATEST_S, MAX_DELAY_S, InputIn, RunOptions, finite
from .core import Core
from .handles import RunHandle
from .reading import ReadMixin
from .suggest import unknown_workflow

#: What workers published for a workflow version: its run defaults and input schema (JSON).
Published = tuple[RunDefaults, str]
#: How long what workers published for a workflow is taken as known (a deploy is seen
#: within that time).
RECORD_TTL_S = 1.0


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A run to start, as every front door asks for it (``Runyard.start``, ``POST
    /v1/runs``, a task's execution, the CLI, a schedule's fire): ``input``, or several
    ``inputs`` (each a value, or ``{"input": ..., "custom_data": ...}``); every other
    field as in :meth:`Runyard.start <runyard.Runyard.start>`."""

    workflow: str
    input: Any = None
    inputs: Sequence[Any] | None = None
    run_id: str | None = None
    custom_data: Any = None
    mode: str = "async"
    priority: int | None = None
    delay: float | None = None
    not_before: datetime | float | None = None
    flow_control: FlowControl | None = None
    retries: int | None = None
    timeout: float | None = None
    sync_mode: str | None = None
    max_results: int | None = None
    task_id: str | None = None
    schedule_id: str | None = None
    version: str | None = None
    #: Where the run reports: ``{"url": ..., "headers": {...}}`` (SPEC §7).
    callback: Mapping[str, Any] | None = None


def check_options(options: RunOptions, prefix: str = "") -> None:
    """Bounds the wire model leaves open but the database has (32-bit columns)."""
    for name, value in (
        ("max_results", options.max_results),
        ("flow_control.parallelism", options.flow_control and options.flow_control.parallelism),
        ("flow_control.rate", options.flow_control and options.flow_control.rate),
    ):
        if isinstance(value, int) and value > INT32_MAX:
            raise InvalidInput(
                f"{prefix}{name} must be at most {INT32_MAX}",
                details=[{"field": prefix + name, "in": "body", "error": f"at most {INT32_MAX}"}],
            )


def request_from_options(
    workflow: str,
    options: RunOptions,
    *,
    input: Any = None,
    inputs: Sequence[InputIn] | None = None,
    custom_data: Any = None,
    run_id: str | None = None,
    mode: str = "async",
    version: str | None = None,
    delay: float | None = None,
    not_before: float | None = None,
    task_id: str | None = None,
) -> StartRequest:
    """The request of a trigger given as wire options (``POST /v1/runs``, a task's
    stored options and their overrides)."""
    check_options(options)
    fc = options.flow_control
    return StartRequest(
        workflow=workflow,
        input=input,
        inputs=[{"input": i.input, "custom_data": i.custom_data} for i in inputs]
        if inputs is not None
        else None,
        custom_data=custom_data,
        run_id=run_id,
        mode=mode,
        priority=options.priority,
        delay=delay,
        not_before=not_before,
        flow_control=FlowControl(
            key=fc.key, parallelism=fc.parallelism, rate=fc.rate, period=fc.period
        )
        if fc is not None
        else None,
        retries=options.retries,
        timeout=options.timeout,
        sync_mode=options.sync_mode,
        max_results=options.max_results,
        task_id=task_id,
        version=version,
        callback=options.callback.model_dump() if options.callback is not None else None,
    )


def retraced(run: NewRun, run_id: str) -> NewRun:
    """A copy of the prepared ``run`` under ``run_id``, with a trace context of its own
    (a schedule's fires are copies of one prepared run: each is a run of its own, so each
    gets its own trace, and its callback's trace headers follow)."""
    old = run.options.get(telemetry.OPTION)
    if old is None:
        return dataclasses.replace(run, id=run_id)
    trace = telemetry.new_run_trace()
    options = {k: v for k, v in run.options.items() if k != telemetry.OPTION}
    if trace is not None:
        options[telemetry.OPTION] = trace
    callback = run.callback
    if callback is not None:
        stale = {n: old.get(n) for n in ("traceparent", "tracestate")}
        headers = {
            k: v for k, v in (callback.get("headers") or {}).items() if stale.get(k.lower()) != v
        }
        callback = {**callback, "headers": telemetry.with_trace_headers(headers, trace)}
    return dataclasses.replace(run, id=run_id, options=options, callback=callback)


def canonical_request(
    req: StartRequest, inputs: Sequence[NewInput], not_before: float | None
) -> str:
    """What makes two triggers of one run id the same request, as canonical JSON text
    (sorted keys, no spaces): the workflow and the version asked for, the mode, every
    option given (``None``: left to the workflow's default), and a SHA-256 of the inputs
    with their custom_data (so a run of many inputs stores 64 characters for them).
    Stored with the run; compared field by field when its id comes again."""
    entries = [[i.input, jsonutil.to_jsonable(i.custom_data)] for i in inputs]
    digest = hashlib.sha256(
        _canonical({"many": req.inputs is not None, "inputs": entries}).encode()
    ).hexdigest()
    fc = req.flow_control

    def number(value: float | None) -> float | None:  # (5 and 5.0: one delay)
        return None if value is None else float(value)

    request = {
        "workflow": req.workflow,
        "version": req.version,
        "inputs": digest,
        "mode": req.mode,
        "priority": req.priority,
        "delay": number(req.delay),
        "not_before": number(not_before),
        "flow_control": fc.to_dict() if fc is not None else None,
        "retries": req.retries,
        "timeout": number(req.timeout),
        "sync_mode": req.sync_mode,
        "max_results": req.max_results,
        "task_id": req.task_id,
        "schedule_id": req.schedule_id,
        **({"callback": dict(req.callback)} if req.callback is not None else {}),
    }
    return _canonical(request)


def _canonical(value: Any) -> str:
    """JSON text that two equal values share: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_same_request(run_id: str, stored: str | None, asked: str | None) -> None:
    """Refuse (409, naming each field that differs) a trigger of an existing run id whose
    request is not the one that created the run. A run stored without its request (from
    before it was kept, or a fork) is not compared."""
    if stored is None or asked is None or stored == asked:
        return
    before, now = jsonutil.loads(stored), jsonutil.loads(asked)
    fields = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if not fields:
        return
    named = ["input (or custom_data)" if f == "inputs" else f for f in fields]
    raise RunIdConflict(
        f"run {run_id!r} exists, started by another request: its {', '.join(named)} "
        "differ(s) from this one's. Send the same request to get that run, or use another "
        "run_id for a new run.",
        details=[
            {
                "field": f,
                "error": "differs from the request that created the run",
                **({} if f == "inputs" else {"existing": before.get(f), "requested": now.get(f)}),
            }
            for f in fields
        ],
    )


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(jsonutil.loads(schema_text) or {})


def validate_against_schema(
    workflow: str, schema: dict[str, Any] | str | None, value: Any, field: str
) -> None:
    """Check an input against the JSON Schema a worker published for ``workflow`` (how a
    process without the workflow's code, such as the server, validates); the schema as
    stored (JSON text) or parsed."""
    if not schema or schema in ("{}", "null"):
        return
    validator = _validator(schema if isinstance(schema, str) else jsonutil.dumps(schema))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    details = [
        {
            "field": ".".join([field, *(str(p) for p in e.absolute_path)]),
            "error": e.message,
            "type": str(e.validator),
        }
        for e in errors
    ]
    raise InvalidInput(
        f"{field} does not match the input type of workflow {workflow!r}: "
        + "; ".join(f"{d['field']}: {d['error']}" for d in details),
        details=details,
    )


class StartMixin(ReadMixin):
    """``start``: the request checked, the run written in one transaction."""

    core: Core
    _records: dict[tuple[str, str | None], tuple[float, Published | None]]

    if TYPE_CHECKING:  # (runyard.service.callbacks.CallbacksMixin, beside it in Service)

        async def check_callback(
            self, callback: Any, field: str = "callback"
        ) -> dict[str, Any] | None: ...

    async def start_run(self, req: StartRequest) -> RunHandle:
        """Start the run ``req`` asks for; an existing ``run_id`` answers with that run
        instead (no second execution)."""
        new = await self.new_run(req)
        core = self.core
        await core.ensure_ready()
        # A process that waits for runs has a hub: mark it before the run exists, so that
        # waiting for the run needs no first read unless the hub hears of it meanwhile.
        hub = core.loop_hub()
        seen = (hub, hub.mark()) if hub is not None else None
        # (A run of many inputs is written by the database thread, never in the loop.)
        row, created = await core.db.write(
            core.store.create_run_txn, new, order=new.id, inline=len(new.inputs) <= 16
        )
        if not created:
            check_same_request(new.id, row["request"], new.request)
        elif row["status"] == RunStatus.INVALID.value and telemetry.OPTION in new.options:
            # No valid input: the run ended as it was written, and its span with it.
            trace = telemetry.run_trace(new.options, new.id, new.workflow)
            if trace is not None:
                trace.end_run(RunStatus.INVALID.value, jsonutil.loads(row["error"]))
        return self._handle(new.id, created, row, seen)

    async def new_run(self, req: StartRequest) -> NewRun:
        """The run ``req`` describes, every field checked (the error names the first
        field refused); nothing is written."""
        name = req.workflow
        check_choice(req.mode, "mode", MODES)
        if req.sync_mode is not None:
            check_choice(req.sync_mode, "sync_mode", SYNC_MODES)
        finite(req.delay, "delay", maximum=MAX_DELAY_S)
        finite(req.timeout, "timeout")
        not_before = req.not_before
        not_before_s = finite(
            not_before.timestamp() if isinstance(not_before, datetime) else not_before,
            "not_before",
            minimum=None,
            maximum=LATEST_S,
        )
        check_int(req.max_results, "max_results", 1, INT32_MAX)
        check_int(req.priority, "priority", -PRIORITY_MAX, PRIORITY_MAX)
        retries = req.retries
        if retries is not None and (
            isinstance(retries, bool)
            or not isinstance(retries, int)
            or not 0 <= retries <= RETRIES_MAX
        ):
            raise invalid(
                "retries", f"retries must be an integer from 0 to {RETRIES_MAX}", "out of range"
            )
        if problems := input_choice_problems(
            input_given=req.input is not None,
            inputs_given=req.inputs is not None,
            custom_data_given=req.custom_data is not None,
        ):
            raise problems_error(problems)
        wf = self.core.local_workflow(name, req.version)
        schema: str | None = None
        if wf is not None:
            defaults = wf.run_defaults()
        else:
            published = await self.published(name, req.version)
            if published is None:
                records = await self.core.read(self.core.store.list_workflows)
                known = [*self.core.workflows, *(r.name for r in records)]
                raise unknown_workflow(name, req.version, known)
            defaults, schema = published
        inputs = req.inputs
        raw = list(inputs) if inputs is not None else [None]
        if not raw:
            raise invalid("inputs", "inputs is empty", "empty")
        new_inputs: list[NewInput] = []
        for i, entry in enumerate(raw):
            if inputs is None:
                value, cdata = req.input, req.custom_data
            elif isinstance(entry, dict) and "input" in entry:
                value, cdata = entry["input"], entry.get("custom_data")
            else:
                value, cdata = entry, None
            field = f"inputs[{i}]" if inputs is not None else "input"
            value = jsonutil.to_jsonable(value)
            jsonutil.dumps(value, what=field, max_depth=JSON_DEPTH_MAX)
            jsonutil.dumps(cdata, what=f"{field}.custom_data", max_depth=JSON_DEPTH_MAX)
            err = None
            try:
                if wf is not None:
                    wf.validate_input(value, field)
                else:
                    validate_against_schema(name, schema, value, field)
            except InvalidInput as exc:
                if inputs is None:
                    raise
                err = exc.to_dict()
            new_inputs.append(NewInput(input=value, custom_data=cdata, error=err))
        await self._check_task(req.task_id, name)
        callback = await self.check_callback(req.callback)
        options: dict[str, Any] = {"retries": retries} if retries is not None else {}
        if name == HTTP_WORKFLOW:
            options["target_url"] = await self._check_targets(new_inputs, inputs is not None)
        if (trace := telemetry.new_run_trace()) is not None:
            # The run's trace, carried into its steps (any worker) and its callbacks.
            options[telemetry.OPTION] = trace
            if callback is not None:
                headers = telemetry.with_trace_headers(callback["headers"], trace)
                callback = {**callback, "headers": headers}
        fc = req.flow_control or defaults.flow_control
        return NewRun(
            id=check_run_id(req.run_id) if req.run_id is not None else generate_run_id(),
            workflow=name,
            workflow_version=defaults.version,
            inputs=new_inputs,
            mode=req.mode,
            priority=req.priority if req.priority is not None else defaults.priority,
            not_before=not_before_s,
            delay_s=req.delay,
            flow_key=fc.key if fc else None,
            flow_limits=req.flow_control.to_dict() if req.flow_control is not None else None,
            timeout_s=req.timeout if req.timeout is not None else defaults.timeout_s,
            max_recovery_attempts=defaults.max_recovery_attempts,
            has_on_failure=defaults.has_on_failure,
            task_id=req.task_id,
            schedule_id=req.schedule_id,
            sync_mode=req.sync_mode,
            max_results=req.max_results,
            options=options,
            # Only a client-chosen id can come again (see docs/workflows.md): a generated
            # one stores no request, and its start pays nothing for it.
            request=canonical_request(req, new_inputs, not_before_s)
            if req.run_id is not None
            else None,
            callback=callback,
        )

    async def _check_targets(self, inputs: list[NewInput], many: bool) -> str | None:
        """The URL an HTTP-target run calls (its first input's), each input's URL checked
        by the outbound guard (422 naming ``url.url``: refused again at send time, as the
        DNS answer may change). An input already refused is left as it is."""
        first: str | None = None
        policy = self.core.outbound_policy()
        for i, entry in enumerate(inputs):
            target = entry.input
            if entry.error is not None or not isinstance(target, dict):
                continue
            field = f"inputs[{i}].url" if many else "url.url"
            await check_url_async(str(target.get("url")), policy, field=field)
            first = first if first is not None else target.get("url")
        return first

    async def _check_task(self, task_id: str | None, workflow: str) -> None:
        """A run started from a task names a stored task of its own workflow (422 naming
        ``task_id`` otherwise, before anything is written)."""
        if task_id is None:
            return
        try:
            task = await self.core.read(self.core.store.get_task, task_id, inline=True)
        except NotFound:
            raise invalid("task_id", f"no task {task_id!r}", "unknown task") from None
        if task.workflow != workflow:
            raise invalid(
                "task_id",
                f"task {task_id!r} is a task of workflow {task.workflow!r}, not {workflow!r}",
                "a task of another workflow",
            )

    async def run_defaults(self, name: str, version: str | None = None) -> RunDefaults | None:
        """What a new run of workflow ``name`` takes from its definition (this process's
        code, else what the workers published, cached for a second); None if unknown."""
        wf = self.core.local_workflow(name, version)
        if wf is not None:
            return wf.run_defaults()
        published = await self.published(name, version)
        return published[0] if published is not None else None

    async def published(self, name: str, version: str | None) -> Published | None:
        """What workers published for a workflow: its run defaults and input schema (JSON
        text), cached for :data:`RECORD_TTL_S`."""
        key = (name, version)
        hit = self._records.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < RECORD_TTL_S:
            return hit[1]
        record: WorkflowRecord | None = await self.core.read(
            self.core.store.get_workflow, name, version, inline=True
        )
        published = None
        if record is not None:
            defaults = RunDefaults.from_record(record.version, record.options)
            published = (defaults, record.input_schema_json)
            self._records[key] = (now, published)
        return published
