"""The service's serving core: cross-request batching around the library's one stage-2 policy.

:class:`RerankEngine` owns one :class:`~rankfunnel.service.batcher.MicroBatcher` per reranker of the chain
(one model worker per device) and the stage-1 side (a :class:`~rankfunnel.pipeline.Pipeline` run in one
collection thread). Everything about reranking itself (fallback chain, deadlines, score cache, ``rerank:
"auto"``, circuit breakers, fail-open / fail-closed, calibration, output checks) is the library's
:class:`~rankfunnel.rerank.stage2.Stage2`, driven here with the batchers as its scorers
(:class:`BatcherScorer`). Routes only translate HTTP shapes.

A request's deadline is set once when its handler starts and covers stage 1 and stage 2; a full queue is
not a failure of the model: it raises :class:`OverloadedError` (429) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from rankfunnel.errors import OverloadedError, RerankerUnavailableError
from rankfunnel.rerank.base import BaseReranker
from rankfunnel.rerank.cache import ScoreCache
from rankfunnel.rerank.shadow import Shadow
from rankfunnel.rerank.stage2 import Scored, Stage2
from rankfunnel.rerank.variants import VariantSplit
from rankfunnel.service.batcher import BatchObserver, MicroBatcher
from rankfunnel.service.config import ServiceConfig
from rankfunnel.service.metrics import ServiceMetrics
from rankfunnel.service.priority import CLASSES as PRIORITY_CLASSES
from rankfunnel.service.priority import DEFAULT_CLASS, rank_of
from rankfunnel.types import Document, Hit, SearchResult

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["BatcherScorer", "NotConfiguredError", "RerankEngine", "Scored", "Stage1"]

#: Pairs of the warm-up batch each reranker scores before the service reports ready (loads lazy weights,
#: compiles kernels and gives the batcher its first throughput measurement).
WARMUP_PAIRS: tuple[tuple[str, str], ...] = (
    ("rankfunnel warm-up query", "a short warm-up document about search engines and reranking"),
) * 8
#: Longest pause between two warm-up attempts after a failure (the first pause is 1 s, then doubling).
WARMUP_MAX_BACKOFF_S = 30.0


def batcher_for(reranker: Any, config: ServiceConfig, on_batch: BatchObserver | None = None) -> MicroBatcher:
    """The :class:`MicroBatcher` the service runs for ``reranker`` under ``config`` (also bench/priority_sim.py)."""
    return MicroBatcher(
        reranker,
        max_batch_tokens=config.max_batch_tokens,
        max_batch_pairs=config.max_batch_pairs,
        max_wait_ms=config.max_wait_ms,
        max_queue_pairs=config.max_queue_pairs,
        max_queue_wait_ms=config.max_queue_wait_ms,
        on_batch=on_batch,
        deadline_ms=config.deadline_ms,
        queue_shares=config.priority.queue_shares(),
        preempt_ms=config.preempt_ms,
        promote_after_ms=config.promote_after_ms,
    )


class NotConfiguredError(RerankerUnavailableError):
    """The server was started without what this endpoint needs (an index or a reranker)."""


@dataclass(frozen=True, slots=True)
class Stage1:
    """Stage-1 candidates of a search, kept for the second phase."""

    query: str
    candidates: tuple[Hit, ...]
    top_n: int
    retriever: str
    ms: float


class BatcherScorer:
    """The service's scorer for :class:`~rankfunnel.rerank.stage2.Stage2`: the cross-request batcher.

    When the time is up, ``asyncio.wait_for`` cancels the request's queued pairs (the batcher drops them if
    the model has not taken them yet) and the batcher hands the model call the latest deadline among the
    requests in the batch, so no model call outlives every request waiting for it.
    """

    def __init__(self, batcher: MicroBatcher, priority: int = 1) -> None:
        self.batcher = batcher
        self.priority = priority  # the batcher's priority (0 = most urgent; see service/priority.py)

    async def score(self, pairs: Sequence[tuple[str, str]], timeout_s: float | None) -> np.ndarray:
        if timeout_s is None:
            return await self.batcher.predict(pairs, priority=self.priority)
        return await asyncio.wait_for(
            self.batcher.predict(pairs, timeout_s=timeout_s, priority=self.priority), max(timeout_s, 0.0)
        )


class RerankEngine:
    """Cross-request batched reranking through the library's :class:`~rankfunnel.rerank.stage2.Stage2`.

    Args:
        rerankers: The chain, primary first (e.g. a GPU model, then a small CPU model); may be empty.
        config: Service configuration.
        pipeline: Optional :class:`~rankfunnel.pipeline.Pipeline` for stage-1 search and document updates.
        metrics: Optional metrics sink.

    Examples:
        >>> import asyncio
        >>> from rankfunnel.rerank.fake import FakeReranker
        >>> async def main():
        ...     async with RerankEngine([FakeReranker()], ServiceConfig()) as eng:
        ...         return await eng.score("red car", ["a red car", "a boat"])
        >>> asyncio.run(main()).raw.tolist()
        [10.0, 0.0]
    """

    def __init__(
        self,
        rerankers: Sequence[BaseReranker],
        config: ServiceConfig,
        *,
        pipeline: Any = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.metrics = metrics
        self.rerankers = list(rerankers)
        self.cache = ScoreCache(maxsize=config.cache_size, ttl_s=config.cache_ttl_s, path=config.cache_path)
        self.stage2_policy = Stage2(
            self.rerankers[0] if self.rerankers else None,
            fallbacks=self.rerankers[1:],
            cache=self.cache,
            deadline_ms=config.deadline_ms,
            attempt_timeout_ms=config.attempt_timeout_ms,
            fail_open=config.fail_open,
            auto_margin=config.auto_margin,
            depth=config.depth_policy,
            breaker_failures=config.breaker_failures,
            breaker_cooldown_s=config.breaker_cooldown_s,
            reason="no reranker configured: stage-1 results",
            on_event=self._fallback,
            on_cache=self._cache_observed,
        )
        self.batchers = [
            batcher_for(r, config, on_batch=metrics.batch_observer(str(r.name)) if metrics else None)
            for r in self.rerankers
        ]
        self.scorers = [BatcherScorer(b) for b in self.batchers]
        # one scorer set per priority class (the batchers serve the most urgent first)
        self.class_scorers = {
            c: [BatcherScorer(b, priority=rank_of(c)) for b in self.batchers] for c in PRIORITY_CLASSES
        }
        # Collections (SQLite, Faiss, BM25) are touched from one thread only: safe whatever their locking.
        self._collection_thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rankfunnel-collection"
        )
        self.ready = False  # workers running: requests are served
        self.warm = False  # every model loaded and scored one warm-up batch: /readyz says ready
        self.warmup_error: str | None = None
        self._warmup_task: asyncio.Task[None] | None = None
        # traffic policies (rankfunnel.service.traffic sets them): shadow and A/B split
        self.shadow: Shadow | None = None
        self.variant_split: VariantSplit | None = None
        self.variant_engines: dict[str, RerankEngine] = {}
        self.variant_key_header = "X-User-Id"
        self.traffic_metrics: Any = None

    @property
    def model_name(self) -> str | None:
        return str(self.rerankers[0].name) if self.rerankers else None

    async def start(self, *, warmup: bool = True) -> None:
        """Start the model workers, then warm up in the background (``warmup=False``: warm at once)."""
        for b in self.batchers:
            await b.start()
        self.ready = True
        if not warmup:
            self.warm = True
        elif self._warmup_task is None:
            self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up(), name="rankfunnel-warmup")

    async def warm_up(self) -> None:
        """One warm-up batch through every reranker's worker, and one stage-1 search when there is an index.

        Raises whatever the first failing model raised; on success :attr:`warm` becomes True.
        """
        pipe = self.pipeline
        if pipe is not None and await self.in_collection_thread(len, pipe.collection) > 0:
            await self.in_collection_thread(pipe.search, WARMUP_PAIRS[0][0], top_k=1, top_n=1, rerank=False)
        await asyncio.gather(*[b.predict(list(WARMUP_PAIRS)) for b in self.batchers])
        self.warm, self.warmup_error = True, None

    async def _warm_up(self) -> None:
        pause = 1.0
        while not self.warm:
            try:
                await self.warm_up()
            except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log, retried with back-off
                self.warmup_error = f"warm-up failed ({type(exc).__name__}: {exc}); retrying in {pause:.0f} s"
                log.warning(self.warmup_error)
                await asyncio.sleep(pause)
                pause = min(2 * pause, WARMUP_MAX_BACKOFF_S)
        log.info("rankfunnel service warm: every model scored its warm-up batch")

    async def stop(self) -> None:
        self.ready = False
        self.warm = False
        if self._warmup_task is not None:
            self._warmup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup_task
            self._warmup_task = None
        for b in self.batchers:
            await b.stop()
        self._collection_thread.shutdown(wait=False, cancel_futures=True)
        self.cache.close()

    async def __aenter__(self) -> RerankEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def in_collection_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking collection call in the collection thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._collection_thread, lambda: fn(*args, **kwargs))

    def deadline(self, timeout_ms: float | None = None) -> float | None:
        """The absolute (``time.monotonic()``) deadline of a request starting now."""
        return self.stage2_policy.deadline(timeout_ms)

    def breaker_states(self) -> dict[str, dict[str, Any]]:
        """Circuit-breaker state per reranker (for ``/readyz`` and ``/metrics``)."""
        return self.stage2_policy.breaker_states()

    def _fallback(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.fallbacks.labels(reason=reason).inc()

    def _cache_observed(self, hits: int, misses: int) -> None:
        if self.metrics is not None:
            st = self.cache.stats()
            self.metrics.cache(hits, misses, st.hits, st.misses)

    # -- scoring --------------------------------------------------------------------------------------------
    async def score(
        self,
        query: str,
        docs: Sequence[str],
        *,
        timeout_ms: float | None = None,
        deadline: float | None = None,
        priority: str = DEFAULT_CLASS,
    ) -> Scored:
        """Raw and normalised scores of ``docs`` for ``query`` through the library's stage 2 and the batchers.

        Raises:
            OverloadedError: the primary reranker's queue is full (answer 429).
            RerankerUnavailableError: every reranker failed and ``fail_open`` is False, or there is none.
        """
        if not self.batchers:
            raise NotConfiguredError("This server has no reranker; start it with --reranker NAME_OR_PATH.")
        if deadline is None:
            deadline = self.deadline(timeout_ms)
        try:
            scorers = self.class_scorers.get(priority, self.scorers)
            return await self.stage2_policy.ascore(query, docs, scorers=scorers, deadline=deadline)
        except OverloadedError:
            if self.metrics is not None:
                self.metrics.rejected.inc()
            raise

    # -- search ---------------------------------------------------------------------------------------------
    async def stage1(
        self, query: str, *, top_k: int, top_n: int, retriever: str | None, filter: Any = None
    ) -> Stage1:
        """Stage-1 candidates (``top_k``) for a search."""
        if self.pipeline is None:
            raise NotConfiguredError(
                "This server has no index; start it with --index-dir DIR to use /v1/search."
            )
        t0 = time.perf_counter()
        res: SearchResult = await self.in_collection_thread(
            self.pipeline.search,
            query,
            top_k=top_k,
            top_n=top_k,
            retriever=retriever,
            filter=filter,
            rerank=False,
        )
        ms = (time.perf_counter() - t0) * 1e3
        if self.metrics is not None:
            self.metrics.latency.labels(stage="stage1").observe(ms / 1e3)
        return Stage1(
            query=res.query, candidates=tuple(res.hits), top_n=top_n, retriever=res.retriever, ms=ms
        )

    def stage1_result(self, s1: Stage1, reason: str) -> SearchResult:
        """The stage-1 answer (first phase of a two-phase search, or a fail-open answer)."""
        return SearchResult(
            query=s1.query,
            hits=s1.candidates[: s1.top_n],
            reranked=False,
            retriever=s1.retriever,
            reranker=self.model_name,
            reason=reason,
            timings_ms={"stage1_ms": s1.ms, "rerank_ms": 0.0, "total_ms": s1.ms},
        )

    async def stage2(
        self,
        s1: Stage1,
        *,
        rerank: bool | str = True,
        timeout_ms: float | None = None,
        deadline: float | None = None,
        priority: str = DEFAULT_CLASS,
    ) -> SearchResult:
        """Rerank stage-1 candidates (or explain why not) and return the final answer.

        ``deadline`` (from :meth:`deadline` when the request started) covers the whole request; without it
        one is set now from ``timeout_ms``. ``priority`` is the request's class: its policy may cap the
        depth or answer stage 1 only (``ServiceConfig.priority``).
        """
        if deadline is None:
            deadline = self.deadline(timeout_ms)
        policy = self.config.priority.policies.get(priority)
        if policy is not None and rerank is not False and self.batchers:
            if policy.stage1_only:
                return self.stage1_result(s1, f"priority class {priority!r} is served stage 1 only")
            if policy.idle_only and (self.batchers[0].queue_pairs or self.batchers[0].busy_pairs):
                return self.stage1_result(
                    s1, f"priority class {priority!r} is reranked only when the reranker is idle; it is busy"
                )
        try:
            (r,) = await self.stage2_policy.arun(
                [s1.query], [list(s1.candidates)], s1.top_n, deadline=deadline, rerank=rerank,
                scorers=self.class_scorers.get(priority, self.scorers),
                max_depth=policy.depth if policy is not None else None,
            )
        except OverloadedError:
            if self.metrics is not None:
                self.metrics.rejected.inc()
            raise
        if self.metrics is not None and r.timings_ms.get("rerank_ms"):
            self.metrics.latency.labels(stage="rerank").observe(r.timings_ms["rerank_ms"] / 1e3)
        timings = {"stage1_ms": s1.ms, **r.timings_ms, "total_ms": s1.ms + r.timings_ms.get("rerank_ms", 0.0)}
        return SearchResult(
            query=s1.query,
            hits=r.hits,
            reranked=r.reranked,
            retriever=s1.retriever,
            reranker=r.model,
            reason=r.reason,
            timings_ms=timings,
        )

    async def search(
        self,
        query: str,
        *,
        top_k: int = 100,
        top_n: int = 10,
        retriever: str | None = None,
        filter: Any = None,
        rerank: bool | str = True,
        timeout_ms: float | None = None,
        priority: str = DEFAULT_CLASS,
    ) -> SearchResult:
        """Stage 1 then stage 2, as one blocking answer."""
        deadline = self.deadline(timeout_ms)
        s1 = await self.stage1(query, top_k=top_k, top_n=top_n, retriever=retriever, filter=filter)
        return await self.stage2(s1, rerank=rerank, deadline=deadline, priority=priority)

    # -- traffic policies: A/B variant, then shadow (rankfunnel.service.traffic) ------------------------------
    def _variant_engine(self, variant: str | None) -> RerankEngine:
        return self.variant_engines.get(variant, self) if variant is not None else self

    def _observe_variant(self, variant: str | None, route: str, seconds: float | None) -> None:
        if variant is not None and self.traffic_metrics is not None:
            self.traffic_metrics.variant_requests.labels(variant=variant, route=route).inc()
            if seconds is not None:
                self.traffic_metrics.variant_latency.labels(variant=variant).observe(seconds)

    async def stage2_variant(
        self,
        s1: Stage1,
        *,
        variant: str | None,
        rerank: bool | str = True,
        deadline: float | None = None,
        priority: str = DEFAULT_CLASS,
    ) -> SearchResult:
        """:meth:`stage2` by the request's A/B variant; then the answer is offered to the shadow (if any)."""
        res = await self._variant_engine(variant).stage2(s1, rerank=rerank, deadline=deadline, priority=priority)
        self._observe_variant(variant, "search", res.timings_ms.get("rerank_ms", 0.0) / 1e3 if res.reranked else None)
        if self.shadow is not None:  # only enqueues: the shadow scores in its own thread with its own model
            self.shadow.offer(s1.query, s1.candidates, res.hits, extra={"variant": variant} if variant else None)
        return res

    async def score_variant(
        self,
        query: str,
        docs: Sequence[str],
        *,
        variant: str | None,
        route: str,
        timeout_ms: float | None = None,
        priority: str = DEFAULT_CLASS,
    ) -> Scored:
        """:meth:`score` by the request's A/B variant; then the ranking is offered to the shadow (if any)."""
        t0 = time.perf_counter()
        scored = await self._variant_engine(variant).score(query, docs, timeout_ms=timeout_ms, priority=priority)
        self._observe_variant(variant, route, time.perf_counter() - t0 if scored.raw is not None else None)
        if self.shadow is not None and scored.normalised is not None:
            cands = [
                Hit(id=str(i), rank=i + 1, score=0.0, stage1_rank=i + 1, stage1_score=0.0,
                    document=Document(id=str(i), text=d))
                for i, d in enumerate(docs)
            ]
            order = np.argsort(-scored.normalised, kind="stable")
            ranked = [
                Hit(id=str(i), rank=r + 1, score=float(scored.normalised[i]), stage1_rank=int(i) + 1,
                    stage1_score=0.0)
                for r, i in enumerate(order)
            ]
            self.shadow.offer(query, cands, ranked, extra={"variant": variant} if variant else None)
        return scored
