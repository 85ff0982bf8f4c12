"""The two-stage pipeline: stage-1 retrieval from a collection, then an optional cross-encoder rerank.

A reranker that fails while scoring never breaks a search: the stage-1 hits come back with
``reranked=False`` and ``reason`` naming the error (fail-open), and nothing pretends to be reranked.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankfunnel.protocols import Collection, Filter
from rankfunnel.rerank.resolve import apply_stored_calibration, load_reranker_or_reason
from rankfunnel.types import Hit, SearchResult
from rankfunnel.validate import check_count, check_queries, check_retriever

if TYPE_CHECKING:
    from rankfunnel.protocols import Embedder
    from rankfunnel.rerank.base import BaseReranker

log = logging.getLogger(__name__)


class Pipeline:
    """Retrieve ``top_k`` candidates from a collection, rerank them, return the best ``top_n``.

    Args:
        collection: stage 1 (e.g. :class:`rankfunnel.collection.LocalCollection`).
        reranker: stage 2; ``None`` returns stage-1 results (``reranked=False``).
        retriever: default stage-1 retriever: ``dense``, ``bm25`` or ``hybrid``.
        top_k: default number of stage-1 candidates handed to the reranker.
        top_n: default number of hits returned.
        reason: why there is no reranker (shown in results); set by :meth:`from_dir` when loading failed.

    Examples:
        >>> from rankfunnel.pipeline import Pipeline  # doctest: +SKIP
        >>> pipe = Pipeline.from_dir("out/idx", reranker="auto")  # doctest: +SKIP
        >>> res = pipe.search("what needs manager approval?", top_n=3)  # doctest: +SKIP
        >>> [(h.rank, h.stage1_rank, round(h.score, 2)) for h in res.hits]  # doctest: +SKIP
        [(1, 4, 0.93), (2, 1, 0.71), (3, 9, 0.40)]
    """

    def __init__(
        self,
        collection: Collection,
        reranker: BaseReranker | None = None,
        *,
        retriever: str = "hybrid",
        top_k: int = 100,
        top_n: int = 10,
        reason: str | None = None,
    ) -> None:
        self.collection = collection
        self.reranker = reranker
        self.retriever = check_retriever(retriever)
        self.top_k = check_count(top_k, field="top_k")
        self.top_n = check_count(top_n, field="top_n")
        self.reason = reason

    @classmethod
    def from_dir(
        cls,
        index_dir: str | Path,
        reranker: str | BaseReranker | None = "auto",
        *,
        embedder: Embedder | None = None,
        backend: str = "auto",
        device: str | None = None,
        retriever: str = "hybrid",
        top_k: int = 100,
        top_n: int = 10,
        collection_options: dict[str, Any] | None = None,
        offline: bool | None = None,
        trained: str | Path | None = None,
        domain: str | None = None,
        reranker_options: Mapping[str, Any] | None = None,
    ) -> Pipeline:
        """Open an index directory and load a reranker by name; stage 1 only if there is none to load.

        The reranker is resolved by :func:`rankfunnel.rerank.resolve_reranker` (``auto``: zerank-2 on a GPU,
        MiniLM-L6 MS MARCO on a CPU, a trained folder only for its declared domain; never an untrained
        model); when none can be loaded, results are stage 1 with the reason in ``SearchResult.reason``.

        Args:
            index_dir: an index directory built by ``rankfunnel index`` (or a Milvus URI with backend=milvus).
            reranker: ``"auto"``, a model name or path, a loader spec (see
                :func:`rankfunnel.rerank.load_reranker`), ``"none"``/None, or a reranker object.
            embedder: override the embedder recorded in the index directory.
            backend: ``auto``, ``faiss`` or ``milvus``.
            device: ``cuda``, ``mps``, ``cpu`` or None for automatic.
            retriever: default stage-1 retriever.
            top_k: default number of candidates.
            top_n: default number of results.
            collection_options: extra keyword arguments for :func:`rankfunnel.collection.open_collection`.
            offline: never use the model hub (None: huggingface_hub's own ``HF_HUB_OFFLINE`` setting).
            trained: a locally trained model folder ``auto`` may use for ``domain`` (its card's domain).
            domain: the domain of these searches (e.g. a dataset name).
            reranker_options: more :func:`rankfunnel.rerank.load_reranker` options (``route``, ``api_key``...).

        Examples:
            >>> pipe = Pipeline.from_dir("out/idx", reranker="none")  # doctest: +SKIP
            >>> pipe.search("discount threshold").reranked  # doctest: +SKIP
            False
        """
        from rankfunnel.collection import open_collection

        collection = open_collection(
            str(index_dir), backend=backend, embedder=embedder, **(collection_options or {})
        )
        model, reason = load_reranker_or_reason(
            reranker, device=device, offline=offline, trained=trained, domain=domain, **dict(reranker_options or {})
        )
        if model is not None and isinstance(reranker, str):  # objects keep the calibration they were given
            apply_stored_calibration(model, index_dir)
        return cls(collection, model, retriever=retriever, top_k=top_k, top_n=top_n, reason=reason)

    # -- searching ------------------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        top_k: int | None = None,
        top_n: int | None = None,
        retriever: str | None = None,
        filter: Filter | None = None,
        rerank: bool = True,
    ) -> SearchResult:
        """Search one query: stage-1 ``top_k`` candidates, reranked, best ``top_n`` returned.

        Timings (ms) in ``timings_ms``: ``stage1_ms``, ``rerank_ms`` (0 when not reranked), ``total_ms``.

        Examples:
            >>> res = pipe.search("list index out of range", top_k=50, top_n=5)  # doctest: +SKIP
            >>> res.hits[0].id, res.reranked  # doctest: +SKIP
            ('code-03', True)
        """
        return self.search_many(
            [query], top_k=top_k, top_n=top_n, retriever=retriever, filter=filter, rerank=rerank
        )[0]

    def search_many(
        self,
        queries: Sequence[str],
        *,
        top_k: int | None = None,
        top_n: int | None = None,
        retriever: str | None = None,
        filter: Filter | None = None,
        rerank: bool = True,
    ) -> list[SearchResult]:
        """Search several queries: one batched stage-1 encoding and one ``rerank_many`` over all pairs.

        The results equal those of :meth:`search` called per query. Each result's ``timings_ms`` are those
        of the whole batch (with ``batch_queries`` giving its size).

        Examples:
            >>> [r.hits[0].id for r in pipe.search_many(["q1", "q2"])]  # doctest: +SKIP
            ['d7', 'd2']
        """
        queries = check_queries(queries)
        if not queries:
            return []
        k = check_count(top_k if top_k is not None else self.top_k, field="top_k")
        n = check_count(top_n if top_n is not None else self.top_n, field="top_n")
        ret = check_retriever(retriever if retriever is not None else self.retriever)

        t0 = time.perf_counter()
        candidates = self._stage1(queries, k, ret, filter)
        t1 = time.perf_counter()
        reranker_name = getattr(self.reranker, "name", None) if self.reranker is not None else None

        reason: str | None = None
        ranked: dict[int, list[Hit]] = {}  # query index -> reranked hits (only queries that were reranked)
        todo = [i for i, c in enumerate(candidates) if c]
        attempted = False
        if not rerank:
            reason = "reranking switched off for this search (rerank=False)"
        elif self.reranker is None:
            reason = self.reason or "no reranker configured: stage-1 results"
        elif todo:
            attempted = True
            out, reason = self._rerank([queries[i] for i in todo], [candidates[i] for i in todo], n)
            if out is not None:
                ranked = dict(zip(todo, out, strict=True))
        t2 = time.perf_counter()

        timings = {
            "stage1_ms": (t1 - t0) * 1e3,
            "rerank_ms": (t2 - t1) * 1e3 if attempted else 0.0,
            "total_ms": (t2 - t0) * 1e3,
        }
        if len(queries) > 1:
            timings["batch_queries"] = float(len(queries))
        results = []
        for i, q in enumerate(queries):
            done = i in ranked
            hits = tuple(ranked[i]) if done else tuple(_stage1_only(candidates[i][:n]))
            why = None if done else reason
            if not done and not candidates[i] and rerank and self.reranker is not None:
                why = "stage 1 returned no candidates"
            results.append(
                SearchResult(
                    query=q,
                    hits=hits,
                    reranked=done,
                    retriever=ret,
                    reranker=reranker_name,
                    reason=why,
                    timings_ms=dict(timings),
                )
            )
        return results

    def _stage1(self, queries: list[str], k: int, retriever: str, filter: Filter | None) -> list[list[Hit]]:
        out = self.collection.search_many(queries, k=k, retriever=retriever, filter=filter)
        return [list(h) for h in out]

    def _rerank(
        self, queries: list[str], candidates: list[list[Hit]], n: int
    ) -> tuple[list[list[Hit]] | None, str | None]:
        """Rerank all queries at once; on any failure return (None, reason) so that callers fail open."""
        assert self.reranker is not None
        name = getattr(self.reranker, "name", type(self.reranker).__name__)
        try:
            ranked = self.reranker.rerank_many(queries, candidates, n)
        except Exception as exc:  # noqa: BLE001 - fail open: any scoring failure gives stage-1 results
            reason = f"reranker {name!r} failed ({type(exc).__name__}: {exc}); showing stage-1 results"
            log.warning(reason)
            return None, reason
        problem = _check_reranked(candidates, ranked, n)
        if problem:
            reason = f"reranker {name!r} returned unusable output ({problem}); showing stage-1 results"
            log.warning(reason)
            return None, reason
        return ranked, None


def _stage1_only(hits: Sequence[Hit]) -> list[Hit]:
    """Stage-1 hits as final hits: rank and score are the stage-1 ones, no rerank score."""
    return [replace(h, rank=h.stage1_rank, score=h.stage1_score, rerank_score=None) for h in hits]


def _check_reranked(candidates: list[list[Hit]], ranked: list[list[Hit]], n: int) -> str | None:
    """Catch a reranker that would make us pretend: wrong counts, unknown ids or non-finite scores."""
    if len(ranked) != len(candidates):
        return f"{len(ranked)} result lists for {len(candidates)} queries"
    for cand, out in zip(candidates, ranked, strict=True):
        if len(out) != min(n, len(cand)):
            return f"{len(out)} hits where {min(n, len(cand))} were expected"
        ids = {h.id for h in cand}
        for h in out:
            if h.id not in ids:
                return f"hit {h.id!r} was not a stage-1 candidate"
            if h.rerank_score is None or not math.isfinite(h.rerank_score) or not math.isfinite(h.score):
                return f"non-finite score for {h.id!r}"
    return None
