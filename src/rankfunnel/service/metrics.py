"""Prometheus metrics of the service, on a registry of their own (several apps can live in one process)."""

from __future__ import annotations

from typing import Any

from rankfunnel._optional import require

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class ServiceMetrics:
    """Requests, per-stage latency, batch sizes, queue depth, cache hit rate and fallbacks.

    Examples:
        >>> m = ServiceMetrics()
        >>> m.fallbacks.labels(reason="timeout").inc()
        >>> b"rankfunnel_fallbacks_total" in m.render()[0]
        True
    """

    def __init__(self) -> None:
        prom = require("prometheus_client", "server", "prometheus-client")
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "rankfunnel_requests", "HTTP requests by route and status code.", ["route", "status"], registry=r
        )
        self.latency = prom.Histogram(
            "rankfunnel_stage_latency_seconds",
            "Latency per stage (stage1, rerank, total).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_pairs = prom.Histogram(
            "rankfunnel_batch_pairs", "Pairs per model call.", ["model"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_requests = prom.Histogram(
            "rankfunnel_batch_requests",
            "Requests merged into one model call.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.model_seconds = prom.Histogram(
            "rankfunnel_model_call_seconds",
            "Duration of one model call.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_pairs = prom.Gauge(
            "rankfunnel_queue_pairs", "Pairs waiting for a model worker.", ["model"], registry=r
        )
        self.promoted = prom.Gauge(
            "rankfunnel_priority_promoted",
            "Requests served as most urgent after waiting promote_after_ms (ageing), since start.",
            ["model"],
            registry=r,
        )
        self.cache_hits = prom.Counter("rankfunnel_cache_hits", "Score cache hits (pairs).", registry=r)
        self.cache_misses = prom.Counter("rankfunnel_cache_misses", "Score cache misses (pairs).", registry=r)
        self.cache_hit_rate = prom.Gauge(
            "rankfunnel_cache_hit_rate", "Score cache hit rate since start.", registry=r
        )
        self.fallbacks = prom.Counter(
            "rankfunnel_fallbacks",
            "Reranks that fell back (timeout, error, all_failed, auto_skip).",
            ["reason"],
            registry=r,
        )
        self.breaker_state = prom.Gauge(
            "rankfunnel_circuit_breaker_state",
            "Circuit breaker per reranker: 0 closed, 1 half-open (probing), 2 open (calls refused).",
            ["model"],
            registry=r,
        )
        self.breaker_opened = prom.Gauge(
            "rankfunnel_circuit_breaker_opened", "Times a reranker's circuit breaker opened.", ["model"],
            registry=r,
        )
        self.rejected = prom.Counter("rankfunnel_rejected", "Requests answered 429 (queue full).", registry=r)
        self.priority_requests = prom.Counter(
            "rankfunnel_priority_requests",
            "Scoring requests by priority class (high, normal, low) and status code (429: refused).",
            ["priority", "status"],
            registry=r,
        )
        self.priority_latency = prom.Histogram(
            "rankfunnel_priority_latency_seconds",
            "Total latency of answered (2xx) scoring requests by priority class.",
            ["priority"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def batch_observer(self, model: str) -> Any:
        """A :data:`~rankfunnel.service.batcher.BatchObserver` recording one model's batches."""

        def observe(pairs: int, requests: int, seconds: float) -> None:
            self.batch_pairs.labels(model=model).observe(pairs)
            self.batch_requests.labels(model=model).observe(requests)
            self.model_seconds.labels(model=model).observe(seconds)

        return observe

    def cache(self, hits: int, misses: int, total_hits: int, total_misses: int) -> None:
        if hits:
            self.cache_hits.inc(hits)
        if misses:
            self.cache_misses.inc(misses)
        total = total_hits + total_misses
        if total:
            self.cache_hit_rate.set(total_hits / total)

    def breakers(self, states: dict[str, dict[str, Any]]) -> None:
        """Record each reranker's circuit-breaker state (from ``Stage2.breaker_states()``)."""
        codes = {"closed": 0, "half_open": 1, "open": 2}
        for model, st in states.items():
            self.breaker_state.labels(model=model).set(codes.get(str(st.get("state")), 2))
            self.breaker_opened.labels(model=model).set(float(st.get("opened", 0)))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
