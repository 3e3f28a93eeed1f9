"""Prometheus metrics, one registry per app (no module-level collectors)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.generation import JobView
from core.providers.failover import CLOSED, HALF_OPEN, FailoverProvider
from tools.http import SERVICES

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tool_calls = Counter(
            "showme_tool_calls_total",
            "Tool calls by tool, dialect and outcome",
            ["tool", "dialect", "outcome"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "showme_jobs_total",
            "Finished generation jobs by model and status",
            ["model", "status"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "showme_job_duration_seconds",
            "Job creation to finish",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.provider_seconds = Histogram(
            "showme_provider_duration_seconds",
            "Job start to finish (provider + store)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.credits_spent = Counter(
            "showme_credits_spent_total", "Units charged for generations", ["unit"], registry=self.registry
        )
        self.viewers = Gauge("showme_viewers_connected", "Open viewer WebSockets", registry=self.registry)
        self.circuit = Gauge(
            "showme_provider_circuit_state",
            "Each provider's circuit breaker: 0 closed, 1 half-open (one probe allowed), 2 open (skipped)",
            ["provider"],
            registry=self.registry,
        )
        self.circuit_opened = Counter(
            "showme_provider_circuit_opened_total", "Times a provider's breaker opened", ["provider"],
            registry=self.registry,
        )  # fmt: skip
        self.failovers = Counter(
            "showme_provider_failovers_total", "Jobs moved from a model's first provider to another",
            ["from_provider", "to_provider"], registry=self.registry,
        )  # fmt: skip
        self._seen: dict[tuple[str, ...], int] = {}
        self._tool_call_counters: dict[tuple[str, str, str], Any] = {}

    def count_tool_call(self, tool: str, dialect: str, outcome: str) -> None:
        """``showme_tool_calls_total{tool,dialect,outcome}`` + 1 (the labelled child is looked up once)."""
        key = (tool, dialect, outcome)
        counter = self._tool_call_counters.get(key)
        if counter is None:
            counter = self._tool_call_counters[key] = self.tool_calls.labels(tool, dialect, outcome)
        counter.inc()

    def on_job(self, event: str, job: JobView) -> None:
        """``GenerationService`` listener."""
        if event == "generation_started" or job.finished_at is None:
            return
        self.jobs.labels(job.model, job.status).inc()
        self.job_seconds.labels(job.model).observe((job.finished_at - job.created_at).total_seconds())
        if job.started_at is not None:
            self.provider_seconds.labels(job.model).observe((job.finished_at - job.started_at).total_seconds())
        if job.charged:
            self.credits_spent.labels(job.unit).inc(job.charged)

    def observe_providers(self, failover: FailoverProvider) -> None:
        """Bring the provider series up to date (at scrape time): breaker states, openings, failovers."""
        for name, breaker in failover.breakers.items():
            state = breaker.state
            self.circuit.labels(name).set(0 if state == CLOSED else 1 if state == HALF_OPEN else 2)
            self._advance(self.circuit_opened.labels(name), ("opened", name), breaker.opened_count)
        for (origin, target), count in failover.switches.items():
            self._advance(self.failovers.labels(origin, target), ("failover", origin, target), count)

    def _advance(self, counter: Any, key: tuple[str, ...], total: int) -> None:
        counter.inc(total - self._seen.get(key, 0))
        self._seen[key] = total

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


METRICS = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""
    metrics = request.app[METRICS]
    provider = request.app[SERVICES].provider
    if isinstance(provider, FailoverProvider):
        metrics.observe_providers(provider)
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
