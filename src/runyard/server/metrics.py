"""Prometheus metrics of one server, in a registry of its own (two apps in one process,
as in tests, never share or clash)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..models import TERMINAL, RunCounts, RunStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "runyard_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "runyard_http_request_duration_seconds",
            "Time to answer an HTTP request (a stream counts until it ends)",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.runs_created = Counter(
            "runyard_runs_created",
            "Runs created through this server, by workflow and mode (async, live, fork)",
            ["workflow", "mode"],
            registry=self.registry,
        )
        self.live_waits = Gauge(
            "runyard_live_waits_in_progress",
            "Requests waiting for a run right now (live runs and result long-polls)",
            registry=self.registry,
        )
        self.runs = Gauge(
            "runyard_runs",
            "Runs not ended, by status (SCHEDULED, QUEUED, RUNNING, PAUSED; counted at "
            "scrape time)",
            ["status"],
            registry=self.registry,
        )
        self.runs_ended = Counter(
            "runyard_runs_ended",
            "Runs that ended since this server started, by status, in the whole database "
            "(every server reports the same: aggregate with max, not sum; seen about two "
            "seconds after the end)",
            ["status"],
            registry=self.registry,
        )
        for status in TERMINAL:
            self.runs_ended.labels(status.value)
        #: The last run transition counted (None: counting has not started); scrapes
        #: take turns, so that none counts what another counted.
        self.last_transition: int | None = None
        self.scrape_lock = asyncio.Lock()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self, counts: RunCounts) -> bytes:
        for status in RunStatus:
            if not status.terminal:
                self.runs.labels(status.value).set(counts.open.get(status.value, 0))
        for ended, n in counts.ended.items():
            self.runs_ended.labels(ended).inc(n)
        self.last_transition = counts.last_transition
        return generate_latest(self.registry)
