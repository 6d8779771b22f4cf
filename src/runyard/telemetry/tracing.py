"""What tracing does when it is on (imported only then: see :mod:`runyard.telemetry`).

Spans (all on the tracer ``runyard``):

* ``run <workflow>``: from the run's creation to its end, recorded once by the process
  that ended it (an item's outcome, a cancel, recovery's crash). Its span id is chosen
  when the run is started and stored with the run, so that step spans on any worker
  (after a crash and a resume too) and callback deliveries name it as their parent
  before it exists; the id generator of Runyard's tracer provider gives the span that
  stored id when it is finally recorded.
* ``step <name>``: one per attempt of a step (or of a ``ctx.map`` element), in the worker
  that ran it, child of the run's span, with its outcome; an error is recorded on it.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import IO, Any, TypeVar, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .carrier import SPAN_FILE_ENV, with_trace_headers

R = TypeVar("R")
log = logging.getLogger("runyard.telemetry")

#: The (trace id, span id) the next span created in this context gets (the run's span).
_FORCED: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "runyard_forced_ids", default=None
)
_W3C = TraceContextTextMapPropagator()


class _Ids(RandomIdGenerator):
    """Random ids, except for a run's span: the ids stored with the run."""

    def generate_span_id(self) -> int:
        forced = _FORCED.get()
        return forced[1] if forced is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _FORCED.get()
        return forced[0] if forced is not None else super().generate_trace_id()


def _exporters_from_env() -> list[SpanProcessor]:
    """The span processors ``OTEL_TRACES_EXPORTER`` names (``otlp`` by default, over
    HTTP/protobuf or gRPC per ``OTEL_EXPORTER_OTLP_PROTOCOL``; ``console``; ``none``),
    each exporter reading its own ``OTEL_EXPORTER_*`` variables."""
    processors: list[SpanProcessor] = []
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower()
    for name in (n.strip() for n in names.split(",")):
        exporter: SpanExporter | None = None
        if name in ("", "none"):
            continue
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            exporter = _otlp_exporter()
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s: not an exporter Runyard knows; ignored", name)
        if exporter is not None:
            processors.append(BatchSpanProcessor(exporter))
    return processors


def _otlp_exporter() -> SpanExporter | None:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
                OTLPSpanExporter as GrpcExporter,
            )

            return cast(SpanExporter, GrpcExporter())
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    except ImportError as exc:
        log.warning(
            "OTLP trace export asked for (%s) but its exporter is not installed (%s): "
            "pip install 'runyard[otel]' (gRPC: opentelemetry-exporter-otlp-proto-grpc)",
            protocol,
            exc,
        )
        return None


def _span_file(path: str) -> SpanProcessor:
    """The test hook: finished spans written at once to ``path``, a JSON object a line."""
    out: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives with the process)

    def line(span: ReadableSpan) -> str:
        return str(span.to_json(indent=None)) + "\n"

    return SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=line))


def _parse(traceparent: str | None, tracestate: str | None) -> SpanContext | None:
    """The span context of a W3C ``traceparent`` (None when it is not a valid one)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}
    ctx = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    return ctx if ctx.is_valid else None


class Tracing:
    """Tracing in this process: Runyard's tracer provider and its tracer."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.ids = provider.id_generator
        self.tracer = provider.get_tracer("runyard")

    @classmethod
    def with_processors(cls, processors: list[SpanProcessor]) -> Tracing:
        provider = TracerProvider(id_generator=_Ids(), resource=Resource.create())
        for p in processors:
            provider.add_span_processor(p)
        return cls(provider)

    @classmethod
    def from_env(cls) -> Tracing:
        """Configured by the ``OTEL_*`` variables (service name, resource, sampler and
        exporters), and made the process's global tracer provider unless it has one."""
        processors = _exporters_from_env()
        if path := os.environ.get(SPAN_FILE_ENV):
            processors.append(_span_file(path))
        tracing = cls.with_processors(processors)
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(tracing.provider)  # what code in steps traces with
        return tracing

    def shutdown(self) -> None:
        self.provider.shutdown()

    def new_run(self) -> dict[str, Any]:
        """A new run's trace context, stored with it: its span's W3C ``traceparent``
        (the trace and the run span's id), ``tracestate``, its parent's span id (the
        current span's, if any), and when it started (ns)."""
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:  # a trace of its own: the sampler decides for the run and its steps
            trace_id, state = self.ids.generate_trace_id(), None
            decision = self.provider.sampler.should_sample(None, trace_id, "run").decision
            sampled = decision == Decision.RECORD_AND_SAMPLE
            flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        span_id = self.ids.generate_span_id()
        return {
            "traceparent": f"00-{trace_id:032x}-{span_id:016x}-{int(flags):02x}",
            "tracestate": state.to_header() if state else None,
            "parent": f"{parent.span_id:016x}" if parent.is_valid else None,
            "start_ns": time.time_ns(),
        }

    def run(self, stored: Mapping[str, Any], run_id: str, workflow: str) -> RunTrace | None:
        span = _parse(stored.get("traceparent"), stored.get("tracestate"))
        if span is None:
            return None
        return RunTrace(self, stored, span, run_id, workflow)


class RunTrace:
    """One execution's view of its run's trace."""

    def __init__(
        self,
        tracing: Tracing,
        stored: Mapping[str, Any],
        span: SpanContext,
        run_id: str,
        workflow: str,
    ) -> None:
        self.tracing = tracing
        self.stored = stored
        self.span = span
        self.run_id = run_id
        self.workflow = workflow
        #: The context of a child of the run's span (a step attempt).
        self.context = trace.set_span_in_context(NonRecordingSpan(span))

    async def attempt(
        self, step: str, attempt: int, item: int, body: Callable[[], Awaitable[R]]
    ) -> R:
        """Await ``body`` (one attempt of step ``step``) inside its span."""
        span = self.tracing.tracer.start_span(
            f"step {step}",
            context=self.context,
            attributes={
                "runyard.run_id": self.run_id,
                "runyard.workflow": self.workflow,
                "runyard.step": step,
                "runyard.attempt": attempt,
                "runyard.item": item,
            },
        )
        with trace.use_span(span, end_on_exit=True, record_exception=False):
            try:
                result = await body()
            except Exception as exc:
                span.set_attribute("runyard.outcome", "failed")
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            except BaseException:
                span.set_attribute("runyard.outcome", "interrupted")  # canceled, shut down
                raise
            span.set_attribute("runyard.outcome", "completed")
            return result

    def end_run(self, status: str, error: Any = None) -> None:
        """Record the run's span (under its stored ids): it ended with ``status``."""
        parent_id = self.stored.get("parent")
        parent = Context()
        if isinstance(parent_id, str):
            parent = trace.set_span_in_context(
                NonRecordingSpan(
                    SpanContext(
                        self.span.trace_id,
                        int(parent_id, 16),
                        is_remote=True,
                        trace_flags=self.span.trace_flags,
                        trace_state=self.span.trace_state or TraceState(),
                    )
                )
            )
        start = self.stored.get("start_ns")
        token = _FORCED.set((self.span.trace_id, self.span.span_id))
        try:
            span = self.tracing.tracer.start_span(
                f"run {self.workflow}",
                context=parent,
                kind=SpanKind.INTERNAL,
                start_time=int(start) if isinstance(start, int) else None,
                attributes={
                    "runyard.run_id": self.run_id,
                    "runyard.workflow": self.workflow,
                    "runyard.status": status,
                },
            )
        finally:
            _FORCED.reset(token)
        if status != "SUCCEEDED":
            message = error.get("message") if isinstance(error, dict) else None
            span.set_status(Status(StatusCode.ERROR, str(message or status)))
        span.end()

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` with the W3C trace headers of the current span (inside a step
        attempt) or else of the run's span, unless they name their own."""
        current = trace.get_current_span().get_span_context()
        if current.is_valid and current.trace_id == self.span.trace_id:
            carrier: dict[str, str] = {}
            _W3C.inject(carrier)
            return with_trace_headers(headers, carrier)
        return with_trace_headers(headers, self.stored)
