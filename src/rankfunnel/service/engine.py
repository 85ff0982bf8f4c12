"""The service's library core: cached, batched, deadline-bound reranking with a fallback chain.

:class:`RerankEngine` owns one :class:`~rankfunnel.service.batcher.MicroBatcher` per reranker of the chain
(one model worker per device), the :class:`~rankfunnel.service.cache.ScoreCache`, and the stage-1 side
(a :class:`~rankfunnel.pipeline.Pipeline` run in one collection thread). Routes only translate HTTP shapes.

Failure policy per request: the chain is tried in order within the request's deadline; a timeout or an
exception moves on to the next reranker; when none is left the request either fails open (stage-1 order,
``reranked=False`` and a reason) or, with ``fail_open=False``, raises :class:`RerankerUnavailableError`
(503). A full queue is not a failure of the model: it raises :class:`OverloadedError` (429) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from rankfunnel.errors import InvalidInputError, OverloadedError, RerankerUnavailableError
from rankfunnel.rerank.base import BaseReranker
from rankfunnel.service.batcher import MicroBatcher
from rankfunnel.service.cache import ScoreCache, cache_key
from rankfunnel.service.config import ServiceConfig
from rankfunnel.service.metrics import ServiceMetrics
from rankfunnel.types import Hit, SearchResult

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Pairs of the warm-up batch each reranker scores before the service reports ready (loads lazy weights,
#: compiles kernels and gives the batcher its first throughput measurement).
WARMUP_PAIRS: tuple[tuple[str, str], ...] = (
    ("rankfunnel warm-up query", "a short warm-up document about search engines and reranking"),
) * 8
#: Longest pause between two warm-up attempts after a failure (the first pause is 1 s, then doubling).
WARMUP_MAX_BACKOFF_S = 30.0


class NotConfiguredError(RerankerUnavailableError):
    """The server was started without what this endpoint needs (an index or a reranker)."""


@dataclass(frozen=True, slots=True)
class Scored:
    """Scores of one request's documents; ``raw`` is None when every reranker failed (``reason`` says why)."""

    raw: np.ndarray | None
    normalised: np.ndarray | None
    model: str | None
    reason: str | None
    cached: int = 0


@dataclass(frozen=True, slots=True)
class Stage1:
    """Stage-1 candidates of a search, kept for the second phase."""

    query: str
    candidates: tuple[Hit, ...]
    top_n: int
    retriever: str
    ms: float


def _norm_id(reranker: BaseReranker) -> str:
    cal = getattr(reranker, "calibration", None)
    if cal is not None and hasattr(cal, "temperature"):
        return f"sigmoid(T={cal.temperature},b={cal.bias})"
    return type(reranker).__name__


class RerankEngine:
    """Cached, cross-request batched reranking with deadlines, fail-open and a fallback chain.

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
        self.batchers = [
            MicroBatcher(
                r,
                max_batch_tokens=config.max_batch_tokens,
                max_batch_pairs=config.max_batch_pairs,
                max_wait_ms=config.max_wait_ms,
                max_queue_pairs=config.max_queue_pairs,
                max_queue_wait_ms=config.max_queue_wait_ms,
                on_batch=metrics.batch_observer(str(r.name)) if metrics else None,
                deadline_ms=config.deadline_ms,
            )
            for r in self.rerankers
        ]
        # Collections (SQLite, Faiss, BM25) are touched from one thread only: safe whatever their locking.
        self._collection_thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rankfunnel-collection"
        )
        self.ready = False  # workers running: requests are served
        self.warm = False  # every model loaded and scored one warm-up batch: /readyz says ready
        self.warmup_error: str | None = None
        self._warmup_task: asyncio.Task[None] | None = None

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

    def _deadline(self, timeout_ms: float | None) -> float:
        ms = (
            self.config.deadline_ms if timeout_ms is None else min(float(timeout_ms), self.config.deadline_ms)
        )
        return asyncio.get_running_loop().time() + ms / 1e3

    def _fallback(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.fallbacks.labels(reason=reason).inc()

    # -- scoring --------------------------------------------------------------------------------------------
    async def score(self, query: str, docs: Sequence[str], *, timeout_ms: float | None = None) -> Scored:
        """Raw and normalised scores of ``docs`` for ``query`` through cache, batcher and fallback chain.

        Raises:
            OverloadedError: the primary reranker's queue is full (answer 429).
            RerankerUnavailableError: every reranker failed and ``fail_open`` is False, or there is none.
        """
        if not self.batchers:
            raise NotConfiguredError("This server has no reranker; start it with --reranker NAME_OR_PATH.")
        deadline = self._deadline(timeout_ms)
        loop = asyncio.get_running_loop()
        reasons: list[str] = []
        for pos, (reranker, batcher) in enumerate(zip(self.rerankers, self.batchers, strict=True)):
            keys = [cache_key(str(reranker.name), _norm_id(reranker), query, d) for d in docs]
            got = self.cache.get_many(keys)
            miss = [i for i, v in enumerate(got) if v is None]
            if self.metrics is not None:
                st = self.cache.stats()
                self.metrics.cache(
                    len(docs) - len(miss), len(miss) if self.cache.enabled else 0, st.hits, st.misses
                )
            raw = np.array([0.0 if v is None else v for v in got], dtype=np.float32)
            if miss:
                left = deadline - loop.time()
                if left <= 0:
                    reasons.append(f"no time left for reranker {reranker.name!r}")
                    break
                budget = "request deadline"
                attempt_s = (
                    None if self.config.attempt_timeout_ms is None else self.config.attempt_timeout_ms / 1e3
                )
                if attempt_s is not None and pos < len(self.batchers) - 1 and attempt_s < left:
                    left, budget = attempt_s, "attempt_timeout_ms"
                try:
                    part = await asyncio.wait_for(batcher.predict([(query, docs[i]) for i in miss]), left)
                except OverloadedError:
                    if self.metrics is not None:
                        self.metrics.rejected.inc()
                    raise
                except TimeoutError:
                    reasons.append(
                        f"reranker {reranker.name!r} timed out after {left * 1e3:.0f} ms ({budget})"
                    )
                    self._fallback("timeout")
                    continue
                except Exception as exc:  # noqa: BLE001 - any model failure moves down the chain
                    reasons.append(f"reranker {reranker.name!r} failed ({type(exc).__name__}: {exc})")
                    log.warning(reasons[-1])
                    self._fallback("error")
                    continue
                raw[miss] = part
                self.cache.put_many([keys[i] for i in miss], part.tolist())
            norm = np.asarray(reranker.normalise(raw), dtype=np.float64)
            return Scored(
                raw=raw,
                normalised=norm,
                model=str(reranker.name),
                reason="; ".join(reasons) + f"; answered by fallback {reranker.name!r}" if reasons else None,
                cached=len(docs) - len(miss),
            )
        self._fallback("all_failed")
        reason = "; ".join(reasons) or "reranking failed"
        if not self.config.fail_open:
            raise RerankerUnavailableError(f"{reason}. The server is configured to fail closed; retry later.")
        return Scored(raw=None, normalised=None, model=None, reason=reason)

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
        self, s1: Stage1, *, rerank: bool | str = True, timeout_ms: float | None = None
    ) -> SearchResult:
        """Rerank stage-1 candidates (or explain why not) and return the final answer."""
        if rerank not in (True, False, "auto"):
            raise InvalidInputError(f'rerank must be true, false or "auto", got {rerank!r}.')
        cands = s1.candidates
        skip: str | None = None
        if rerank is False:
            skip = "reranking switched off for this search (rerank=false)"
        elif not self.rerankers:
            skip = "no reranker configured: stage-1 results"
        elif not cands:
            skip = "stage 1 returned no candidates"
        elif rerank == "auto":
            gap = cands[0].stage1_score - cands[1].stage1_score if len(cands) > 1 else float("inf")
            if gap >= self.config.auto_margin:
                skip = (
                    f"rerank=auto: stage 1 is confident (top-1 leads top-2 by {gap:.4g} >= margin "
                    f"{self.config.auto_margin}); stage 2 skipped"
                )
                self._fallback("auto_skip")
        if skip is not None:
            return self.stage1_result(s1, skip)
        t0 = time.perf_counter()
        docs = [h.document.content if h.document is not None else "" for h in cands]
        scored = await self.score(s1.query, docs, timeout_ms=timeout_ms)
        rerank_ms = (time.perf_counter() - t0) * 1e3
        if self.metrics is not None:
            self.metrics.latency.labels(stage="rerank").observe(rerank_ms / 1e3)
        timings = {
            "stage1_ms": s1.ms,
            "rerank_ms": rerank_ms,
            "total_ms": s1.ms + rerank_ms,
            "cached_pairs": float(scored.cached),
        }
        if scored.raw is None or scored.normalised is None:
            return SearchResult(
                query=s1.query,
                hits=s1.candidates[: s1.top_n],
                reranked=False,
                retriever=s1.retriever,
                reranker=self.model_name,
                reason=f"{scored.reason}; showing stage-1 results",
                timings_ms=timings,
            )
        order = np.argsort(-scored.raw, kind="stable")[: s1.top_n]
        hits = tuple(
            replace(
                cands[i], rank=r + 1, score=float(scored.normalised[i]), rerank_score=float(scored.raw[i])
            )
            for r, i in enumerate(order)
        )
        return SearchResult(
            query=s1.query,
            hits=hits,
            reranked=True,
            retriever=s1.retriever,
            reranker=scored.model,
            reason=scored.reason,
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
    ) -> SearchResult:
        """Stage 1 then stage 2, as one blocking answer."""
        s1 = await self.stage1(query, top_k=top_k, top_n=top_n, retriever=retriever, filter=filter)
        return await self.stage2(s1, rerank=rerank, timeout_ms=timeout_ms)
