"""Service configuration: one frozen, keyword-only dataclass validated once.

Environment variables are read only in :mod:`rankfunnel.cli.serve`; the library never reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from rankfunnel import defaults
from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.depth import DepthPolicy
from rankfunnel.service.priority import PriorityConfig


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}.")
    if integer and not isinstance(value, int):
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-request input limits; exceeding one answers 413 (size) or 422 (length) naming the limit.

    Args:
        max_documents: Documents per rerank request or ``/v1/documents`` batch (and ``top_k`` of a search).
        max_doc_chars: Characters per document text.
        max_query_chars: Characters per query.
        max_id_chars: Characters per document id (also the ``model`` name of a rerank request).
        max_title_chars: Characters per document title.
        max_metadata_bytes: Size of one document's metadata (or a search ``filter``) as compact JSON, in bytes.
        max_body_bytes: Size of a request body in bytes (answers 413 before parsing).
        max_top_n: Largest ``top_n`` of a search.
    """

    max_documents: int = 1000
    max_doc_chars: int = 20_000
    max_query_chars: int = 2_000
    max_id_chars: int = 512
    max_title_chars: int = 2_000
    max_metadata_bytes: int = 16_384
    max_body_bytes: int = 16 * 1024 * 1024
    max_top_n: int = 1000

    def __post_init__(self) -> None:
        for name in (
            "max_documents",
            "max_doc_chars",
            "max_query_chars",
            "max_id_chars",
            "max_title_chars",
            "max_metadata_bytes",
            "max_body_bytes",
            "max_top_n",
        ):
            _positive(name, getattr(self, name), integer=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Everything the service can be tuned with.

    Args:
        max_batch_tokens: Token budget of one model call built from several requests (tokens estimated as
            ``characters / 4``; a single request larger than the budget runs alone).
        max_batch_pairs: Upper bound on pairs per model call, whatever their length.
        max_wait_ms: How long the batcher waits for more requests once it holds one.
        max_queue_pairs: Pairs allowed to wait per model worker; beyond it requests get 429 + Retry-After.
        max_queue_wait_ms: Also answer 429 when the queue would take longer than this to drain at the
            measured model throughput; bounds latency under overload. ``"auto"`` (default) derives the bound
            from the measured model-call time (4 calls' worth, at least 1 s, at most a quarter of ``deadline_ms``);
            ``None``: only ``max_queue_pairs``.
        max_inflight: Requests handled at once; more get 429 before their body is read (protects the event
            loop when HTTP handling, not the model, is the bottleneck). ``"auto"`` (default) derives it from
            the measured completion rate while busy: about 1 s of work in flight (at least 32, at most 1024).
        preempt_ms: While a more urgent priority class has requests arriving, less urgent work goes to the
            model in slices of about this many milliseconds of model time, so an urgent request waits at most
            one slice (``None``: never slice; see :class:`~rankfunnel.service.batcher.MicroBatcher`).
        promote_after_ms: Ageing: a queued request that has waited this long (or half its deadline, if less)
            is served as most urgent, so a stream of urgent requests cannot starve an accepted one until its
            deadline (``None``: strict priority).
        deadline_ms: Default per-request deadline for reranking (a request may ask for less).
        fail_open: On timeout or failure answer stage-1 order with ``reranked: false`` and a reason;
            ``False`` answers 503 instead.
        attempt_timeout_ms: Time one reranker of the fallback chain may take before the next is tried
            (``None``: the whole remaining deadline).
        auto_margin: ``rerank: "auto"`` skips stage 2 when stage-1 top-1 beats top-2 by at least this much
            (in stage-1 score units: cosine for dense, RRF score for hybrid, BM25 for bm25).
        breaker_failures: Consecutive failures of one reranker that open its circuit breaker (its calls are
            then refused at once, the next of the chain answers) until a probe succeeds.
        breaker_cooldown_s: Seconds an open circuit breaker waits before letting one probe call through.
        cache_size: Entries of the in-memory LRU score cache (0 disables caching).
        cache_ttl_s: Seconds a cached score stays valid.
        cache_path: Optional SQLite file for a persistent cache shared across restarts.
        api_keys: Accepted API keys (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``); empty: no auth.
        limits: Per-request input limits.
        trust_remote_code: Allow model repositories to run their own code (off by default).
        warmup: Report ready (``/readyz``) only after every model scored one warm-up batch and stage 1 ran
            one search; ``False`` reports ready as soon as the workers run (tests that count model calls).
        depth_policy: An adaptive-depth policy for ``/v1/search`` with ``rerank: "auto"``: per query, skip
            stage 2 or rerank only the top 10/20/50/100 (:class:`~rankfunnel.rerank.depth.DepthPolicy`).
        priority: Priority classes (high, normal, low) and what each gets: queue order, queue share before
            429, rerank depth, stage 1 only (:class:`~rankfunnel.service.priority.PriorityConfig`).

    Examples:
        >>> ServiceConfig(max_wait_ms=2, deadline_ms=500).fail_open
        True
    """

    max_batch_tokens: int = 16_384
    max_batch_pairs: int = 512
    max_wait_ms: float = 3.0
    max_queue_pairs: int = 8_192
    max_queue_wait_ms: float | Literal["auto"] | None = "auto"
    max_inflight: int | Literal["auto"] = "auto"
    preempt_ms: float | None = 50.0
    promote_after_ms: float | None = 5_000.0
    deadline_ms: float = 10_000.0
    fail_open: bool = defaults.FAIL_OPEN
    attempt_timeout_ms: float | None = None
    auto_margin: float = defaults.AUTO_MARGIN
    breaker_failures: int = defaults.BREAKER_FAILURES
    breaker_cooldown_s: float = defaults.BREAKER_COOLDOWN_S
    cache_size: int = defaults.CACHE_SIZE
    cache_ttl_s: float = defaults.CACHE_TTL_S
    cache_path: str | None = None
    api_keys: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    trust_remote_code: bool = False
    warmup: bool = True
    priority: PriorityConfig = field(default_factory=PriorityConfig)
    depth_policy: DepthPolicy | None = None

    def __post_init__(self) -> None:
        _positive("max_batch_tokens", self.max_batch_tokens, integer=True)
        _positive("max_batch_pairs", self.max_batch_pairs, integer=True)
        _positive("max_queue_pairs", self.max_queue_pairs, integer=True)
        if self.max_inflight != "auto":
            _positive("max_inflight", self.max_inflight, integer=True)
        if self.max_queue_wait_ms is not None and self.max_queue_wait_ms != "auto":
            _positive("max_queue_wait_ms", self.max_queue_wait_ms)
        _positive("deadline_ms", self.deadline_ms)
        if self.preempt_ms is not None:
            _positive("preempt_ms", self.preempt_ms)
        if self.promote_after_ms is not None:
            _positive("promote_after_ms", self.promote_after_ms)
        _positive("cache_ttl_s", self.cache_ttl_s)
        _positive("breaker_failures", self.breaker_failures, integer=True)
        if not (
            isinstance(self.breaker_cooldown_s, (int, float))
            and math.isfinite(self.breaker_cooldown_s)
            and self.breaker_cooldown_s >= 0
        ):
            raise InvalidInputError(
                f"breaker_cooldown_s must be a finite number >= 0, got {self.breaker_cooldown_s!r}."
            )
        if self.attempt_timeout_ms is not None:
            _positive("attempt_timeout_ms", self.attempt_timeout_ms)
        if not (isinstance(self.max_wait_ms, (int, float)) and 0 <= self.max_wait_ms < 10_000):
            raise InvalidInputError(f"max_wait_ms must be between 0 and 10000, got {self.max_wait_ms!r}.")
        if not (
            isinstance(self.auto_margin, (int, float))
            and math.isfinite(self.auto_margin)
            and self.auto_margin >= 0
        ):
            raise InvalidInputError(f"auto_margin must be a finite number >= 0, got {self.auto_margin!r}.")
        if isinstance(self.cache_size, bool) or not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise InvalidInputError(
                f"cache_size must be an integer >= 0 (0 disables it), got {self.cache_size!r}."
            )
        if isinstance(self.api_keys, str):
            raise InvalidInputError(
                "api_keys must be a tuple of strings, not one string: use api_keys=(key,)."
            )
        object.__setattr__(self, "api_keys", tuple(self.api_keys))
        for key in self.api_keys:
            if not isinstance(key, str) or len(key) < 8:
                raise InvalidInputError("Every API key must be a string of at least 8 characters.")
        if self.depth_policy is not None and not isinstance(self.depth_policy, DepthPolicy):
            raise InvalidInputError("depth_policy must be a rankfunnel.rerank.depth.DepthPolicy (DepthPolicy.load).")
        if not isinstance(self.limits, Limits):
            raise InvalidInputError("limits must be a rankfunnel.service.config.Limits instance.")
