"""Workflow definitions: the function, its input type and its options."""

from __future__ import annotations

import inspect
import random
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .. import jsonutil
from ..errors import InvalidInput, RateLimited
from ..rules import INT32_MAX
from ..schemas import finite

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True, slots=True)
class FlowControl:
    """A budget shared by everything that names ``key``, across all workers: at most
    ``parallelism`` at once and at most ``rate`` starts per ``period`` seconds."""

    key: str
    parallelism: int | None = None
    rate: int | None = None
    period: float = 1.0

    def __post_init__(self) -> None:
        if not self.key or len(self.key) > 200 or "\x00" in self.key:
            raise InvalidInput("flow_control.key must be 1-200 characters")
        for name, value in (("parallelism", self.parallelism), ("rate", self.rate)):
            if value is not None and not 1 <= value <= INT32_MAX:
                raise InvalidInput(
                    f"flow_control.{name} must be from 1 to {INT32_MAX}",
                    details=[{"field": f"flow_control.{name}", "error": "out of range"}],
                )
        finite(self.period, "flow_control.period", exclusive=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "parallelism": self.parallelism,
            "rate": self.rate,
            "period_s": float(self.period),
        }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step, or a workflow's body, is retried: ``max_attempts`` in all,
    exponential backoff from ``backoff_s`` doubling up to ``max_backoff_s``, with full
    jitter. An attempt that raised :class:`~runyard.RateLimited` is retried after its
    ``retry_after`` and does not count among ``max_attempts``, only against its own bound,
    ``max_rate_limited_attempts``, so that an upstream that never stops limiting still
    ends the step."""

    max_attempts: int = 1
    backoff_s: float = 0.1
    max_backoff_s: float = 60.0
    multiplier: float = 2.0
    jitter: bool = True
    max_rate_limited_attempts: int = 20

    @classmethod
    def of(cls, retries: int | RetryPolicy | None, default: RetryPolicy) -> RetryPolicy:
        if retries is None:
            return default
        if isinstance(retries, RetryPolicy):
            return retries
        if retries < 0:
            raise InvalidInput("retries must be 0 or more")
        return cls(max_attempts=retries + 1)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.max_backoff_s, self.backoff_s * self.multiplier ** (attempt - 1))
        return random.uniform(raw / 2, raw) if self.jitter else raw

    def next_delay(self, exc: BaseException, failed: int, limited: int) -> float | None:
        """Seconds to wait before the attempt after one that raised ``exc``, or None when
        no attempt is left; ``failed`` attempts so far failed and ``limited`` more were
        rate limited (this one included)."""
        if isinstance(exc, RateLimited):
            return exc.retry_after if limited < self.max_rate_limited_attempts else None
        return self.delay(failed) if failed < self.max_attempts else None


@dataclass(frozen=True, slots=True)
class RunDefaults:
    """What a new run takes from its workflow's definition: from the code when this
    process has it, else from the record the workers published."""

    version: str
    flow_control: FlowControl | None
    timeout_s: float | None
    max_recovery_attempts: int
    has_on_failure: bool
    priority: int

    @classmethod
    def from_record(cls, version: str, options: dict[str, Any]) -> RunDefaults:
        fc = options.get("flow_control")
        return cls(
            version=version,
            flow_control=FlowControl(
                key=fc["key"],
                parallelism=fc.get("parallelism"),
                rate=fc.get("rate"),
                period=fc.get("period_s", 1.0),
            )
            if fc
            else None,
            timeout_s=options.get("timeout_s"),
            max_recovery_attempts=int(options.get("max_recovery_attempts", 5)),
            has_on_failure=bool(options.get("has_on_failure")),
            priority=int(options.get("priority", 0)),
        )


@dataclass(slots=True)
class WorkflowDef:
    """A registered workflow."""

    name: str
    fn: Callable[..., Any]
    version: str = "1"
    description: str | None = None
    input_type: Any = Any
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float | None = None
    flow_control: FlowControl | None = None
    max_recovery_attempts: int = 5
    on_failure: Callable[..., Any] | None = None
    priority: int = 0
    is_async: bool = False
    takes_input: bool = True
    _adapter: TypeAdapter[Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def adapter(self) -> TypeAdapter[Any]:
        if self._adapter is None:
            self._adapter = TypeAdapter(self.input_type)
        return self._adapter

    def input_schema(self) -> dict[str, Any]:
        if not self.takes_input:
            return {"type": "null"}
        try:
            return self.adapter.json_schema()
        except Exception:
            return {}

    def validate_input(self, value: Any, field_name: str = "input") -> Any:
        """The typed input, or :class:`InvalidInput` naming each bad field."""
        if not self.takes_input:
            return None
        try:
            return self.adapter.validate_python(value)
        except ValidationError as exc:
            details = [
                {
                    "field": ".".join([field_name, *(str(p) for p in err["loc"])]),
                    "error": err["msg"],
                    "type": err["type"],
                }
                for err in exc.errors()
            ]
            raise InvalidInput(
                f"{field_name} does not match the input type of workflow {self.name!r}: "
                + "; ".join(f"{d['field']}: {d['error']}" for d in details),
                details=details,
            ) from None

    def run_defaults(self) -> RunDefaults:
        return RunDefaults(
            version=self.version,
            flow_control=self.flow_control,
            timeout_s=self.timeout_s,
            max_recovery_attempts=self.max_recovery_attempts,
            has_on_failure=self.on_failure is not None,
            priority=self.priority,
        )

    def to_record(self) -> dict[str, Any]:
        options = {
            "retries": self.retries.max_attempts - 1,
            "timeout_s": self.timeout_s,
            "flow_control": self.flow_control.to_dict() if self.flow_control else None,
            "max_recovery_attempts": self.max_recovery_attempts,
            "has_on_failure": self.on_failure is not None,
            "priority": self.priority,
        }
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "input_schema": jsonutil.dumps(self.input_schema()),
            "options": jsonutil.dumps(options),
            "flow_control": self.flow_control.to_dict() if self.flow_control else None,
        }


def make_definition(
    fn: Callable[..., Any],
    *,
    name: str | None,
    version: str,
    description: str | None,
    input_type: Any,
    retries: int | RetryPolicy | None,
    timeout_s: float | None,
    flow_control: FlowControl | None,
    max_recovery_attempts: int,
    on_failure: Callable[..., Any] | None,
    priority: int,
) -> WorkflowDef:
    wf_name = name or fn.__name__
    if not NAME_RE.match(wf_name):
        raise ValueError(
            f"workflow name {wf_name!r} must start with a letter or _ and contain only "
            "letters, digits, _ . - (at most 128)"
        )
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise TypeError(f"workflow {wf_name!r} must take the context as its first argument")
    takes_input = len(params) >= 2
    if input_type is None:
        input_type = Any
        if takes_input:
            hints = typing.get_type_hints(fn)
            input_type = hints.get(params[1].name, Any)
    doc = description or (inspect.getdoc(fn) or None)
    return WorkflowDef(
        name=wf_name,
        fn=fn,
        version=str(version),
        description=doc,
        input_type=input_type,
        retries=RetryPolicy.of(retries, RetryPolicy(max_attempts=1)),
        timeout_s=finite(timeout_s, "timeout"),
        flow_control=flow_control,
        max_recovery_attempts=max_recovery_attempts,
        on_failure=on_failure,
        priority=priority,
        is_async=inspect.iscoroutinefunction(fn),
        takes_input=takes_input,
    )
