"""Traffic policies of the service: shadow mode and the A/B split (``serve --shadow``, ``serve --variant``).

Kept apart from :mod:`rankfunnel.service.engine` (which it hooks into through a few attributes) so that the
engine stays the serving core.

- Shadow: a :class:`~rankfunnel.rerank.shadow.Shadow` (the library's: its own bounded queue, its own thread
  and its own copy of the shadow model, never the primary's batcher) is offered each answered request after
  the answer is built; ``offer`` only enqueues. Its records aggregate into ``rankfunnel_shadow_*`` metrics.
- A/B split: each variant other than ``primary`` is a :class:`~rankfunnel.service.engine.RerankEngine` of its
  own (own batcher and model worker, no index); the request key (the ``X-User-Id`` header by default, else the
  query) picks the variant (:class:`~rankfunnel.rerank.variants.VariantSplit`). The variant is named in the
  ``X-Rankfunnel-Variant`` header of every reranking endpoint, in ``/v1/search``'s ``variant`` field, and as
  the ``variant`` label of ``rankfunnel_variant_*`` metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankfunnel.rerank.shadow import Shadow
from rankfunnel.rerank.variants import PRIMARY, Variant, VariantSplit

if TYPE_CHECKING:
    from fastapi import Request

    from rankfunnel.rerank.base import BaseReranker
    from rankfunnel.service.engine import RerankEngine
    from rankfunnel.service.metrics import ServiceMetrics

VARIANT_HEADER = "X-Rankfunnel-Variant"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_UNIT = tuple(i / 10 for i in range(-10, 11))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TrafficOptions:
    """What ``serve --shadow/--variant`` asked for (specs are loaded in the service's lifespan).

    Args:
        shadow_spec: a reranker spec for the shadow (None: no shadow).
        shadow_rate: fraction of requests shadowed.
        shadow_log: the shadow's JSONL file (rotated at ``shadow_max_bytes``, ``shadow_backups`` copies).
        shadow_queue: bound of the shadow queue (beyond it requests are not shadowed, and counted).
        shadow: a ready :class:`Shadow` (tests and embedding code) instead of ``shadow_spec``.
        variants: the A/B split (``primary`` as a spec means the server's own chain).
        variant_rerankers: ready rerankers per variant name (tests) instead of loading their specs.
        variant_key_header: the request header whose value picks the variant (else the query).
    """

    shadow_spec: str | None = None
    shadow_rate: float = 0.1
    shadow_log: str | Path | None = None
    shadow_queue: int = 64
    shadow_max_bytes: int = 10 * 1024 * 1024
    shadow_backups: int = 3
    shadow: Shadow | None = None
    variants: Sequence[Variant] = ()
    variant_rerankers: Mapping[str, Sequence[BaseReranker]] | None = None
    variant_key_header: str = "X-User-Id"


class TrafficMetrics:
    """Shadow and variant metrics, on the service's own registry."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        from rankfunnel._optional import require

        prom = require("prometheus_client", "server", "prometheus-client")
        r = metrics.registry
        self.variant_requests = prom.Counter(
            "rankfunnel_variant_requests", "Reranking requests per A/B variant and route.", ["variant", "route"],
            registry=r,
        )
        self.variant_latency = prom.Histogram(
            "rankfunnel_variant_rerank_seconds", "Stage-2 latency per A/B variant.", ["variant"],
            buckets=_BUCKETS, registry=r,
        )
        self.shadow_records = prom.Counter(
            "rankfunnel_shadow_records", "Requests scored by the shadow reranker.", registry=r
        )
        self.shadow_changed = prom.Counter(
            "rankfunnel_shadow_changed", "Shadowed requests whose top-n the shadow would change.", registry=r
        )
        self.shadow_overlap = prom.Histogram(
            "rankfunnel_shadow_overlap", "overlap@n of primary and shadow top-n.", buckets=_UNIT[10:], registry=r
        )
        self.shadow_tau = prom.Histogram(
            "rankfunnel_shadow_kendall_tau", "Kendall tau of primary and shadow top-n.", buckets=_UNIT, registry=r
        )
        self.shadow_latency = prom.Histogram(
            "rankfunnel_shadow_latency_seconds", "The shadow reranker's latency.", buckets=_BUCKETS, registry=r
        )
        self.shadow_dropped = prom.Gauge(
            "rankfunnel_shadow_dropped", "Sampled requests not shadowed because the shadow queue was full.",
            registry=r,
        )
        self.shadow_failed = prom.Gauge(
            "rankfunnel_shadow_failed", "Shadowed requests the shadow reranker failed on.", registry=r
        )

    def record(self, rec: Mapping[str, Any]) -> None:
        """Aggregate one shadow record (called from the shadow's thread; prometheus_client is thread-safe)."""
        self.shadow_records.inc()
        if rec.get("changed"):
            self.shadow_changed.inc()
        self.shadow_overlap.observe(float(rec["overlap"]))
        if rec.get("kendall_tau") is not None:
            self.shadow_tau.observe(float(rec["kendall_tau"]))
        self.shadow_latency.observe(float(rec["shadow_ms"]) / 1e3)

    def watch(self, shadow: Shadow) -> None:
        self.shadow_dropped.set_function(lambda: shadow.stats()["dropped"])
        self.shadow_failed.set_function(lambda: shadow.stats()["failed"])


async def attach(
    engine: RerankEngine,
    opts: TrafficOptions,
    metrics: ServiceMetrics,
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    reranker_options: Mapping[str, Any] | None = None,
) -> None:
    """Load and start the shadow and the variants of ``opts`` on ``engine`` (in the service's lifespan)."""
    from rankfunnel.service.app import load_chain
    from rankfunnel.service.engine import RerankEngine

    if opts.shadow is None and opts.shadow_spec is None and not opts.variants:
        return
    tm = TrafficMetrics(metrics)
    engine.traffic_metrics = tm

    def load(spec: str) -> list[BaseReranker]:
        return load_chain([spec], device=device, trust_remote_code=trust_remote_code,
                          reranker_options=reranker_options)

    shadow = opts.shadow
    if shadow is None and opts.shadow_spec is not None:
        chain = await asyncio.to_thread(load, opts.shadow_spec)
        if chain:
            shadow = Shadow(
                chain[0], opts.shadow_rate, opts.shadow_log, max_queue=opts.shadow_queue,
                max_bytes=opts.shadow_max_bytes, backups=opts.shadow_backups,
            )
    if shadow is not None:
        shadow.on_record = tm.record
        tm.watch(shadow)
        engine.shadow = shadow
    if opts.variants:
        sub_cfg = dataclasses.replace(engine.config, cache_path=None)  # one SQLite cache file per process
        for v in opts.variants:
            if v.spec == PRIMARY:
                continue
            given = (opts.variant_rerankers or {}).get(v.name)
            chain = list(given) if given is not None else await asyncio.to_thread(load, v.spec)
            sub = RerankEngine(chain, sub_cfg, metrics=metrics)
            await sub.start(warmup=engine.config.warmup)
            engine.variant_engines[v.name] = sub
        engine.variant_split = VariantSplit({v.name: v.weight for v in opts.variants})
        engine.variant_key_header = opts.variant_key_header


async def detach(engine: RerankEngine) -> None:
    """Stop the variants' engines and flush the shadow (its queued records are written)."""
    for sub in engine.variant_engines.values():
        await sub.stop()
    engine.variant_engines.clear()
    if engine.shadow is not None:
        await asyncio.to_thread(engine.shadow.close, 5.0)


def pick_variant(engine: RerankEngine, request: Request, query: str) -> str | None:
    """The request's variant (None without an A/B split): by the key header, else the query."""
    if engine.variant_split is None:
        return None
    key = request.headers.get(engine.variant_key_header) or query
    return engine.variant_split.pick(key)
