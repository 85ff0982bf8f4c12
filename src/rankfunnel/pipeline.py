"""The two-stage pipeline: stage-1 retrieval from a collection, then an optional cross-encoder rerank.

Stage 2 (reranking policy) is :class:`rankfunnel.rerank.stage2.Stage2`, shared with the service. A reranker
that fails while scoring never breaks a search: the stage-1 hits come back with ``reranked=False`` and
``reason`` naming the error (fail-open), and nothing pretends to be reranked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankfunnel import defaults
from rankfunnel.errors import InvalidInputError
from rankfunnel.protocols import Collection, Filter
from rankfunnel.rerank.cache import ScoreCache
from rankfunnel.rerank.resolve import apply_stored_calibration, load_reranker_or_reason
from rankfunnel.rerank.stage2 import Stage2
from rankfunnel.rerank.variants import PRIMARY, VariantSplit
from rankfunnel.types import Hit, SearchResult
from rankfunnel.validate import check_count, check_queries, check_retriever

if TYPE_CHECKING:
    from rankfunnel.protocols import Embedder
    from rankfunnel.rerank.base import BaseReranker
    from rankfunnel.rerank.shadow import Shadow

log = logging.getLogger(__name__)


class Pipeline:
    """Retrieve ``top_k`` candidates from a collection, rerank them, return the best ``top_n``.

    Everything after stage 1 is :class:`~rankfunnel.rerank.stage2.Stage2` (the same object the service
    uses): the reranker and its fallbacks, deadlines, the score cache, ``rerank="auto"``, circuit breakers,
    fail-open and output checks.

    Args:
        collection: stage 1 (e.g. :class:`rankfunnel.collection.LocalCollection`).
        reranker: stage 2; ``None`` returns stage-1 results (``reranked=False``).
        retriever: default stage-1 retriever: ``dense``, ``bm25`` or ``hybrid``.
        top_k: default number of stage-1 candidates handed to the reranker.
        top_n: default number of hits returned.
        reason: why there is no reranker (shown in results); set by :meth:`from_dir` when loading failed.
        fallbacks: rerankers tried in order when the previous one fails or times out.
        cache: a :class:`~rankfunnel.rerank.cache.ScoreCache`, or a path for a persistent SQLite one.
        deadline_ms: default deadline of a whole search (stage 1 and stage 2); None: none.
        attempt_timeout_ms: time one reranker of the chain may take before the next is tried.
        fail_open: on reranker failure return stage-1 order with a reason; False raises instead.
        auto_margin: ``rerank="auto"`` skips stage 2 when stage-1 top-1 leads top-2 by this much.
        stage2: a ready :class:`~rankfunnel.rerank.stage2.Stage2` (then the options above are not used).
        shadow: a :class:`~rankfunnel.rerank.shadow.Shadow`: a second reranker scores a sample of searches in its
            own background thread after each answer is built (never delaying it); :meth:`close` flushes it.
        depth_policy: a :class:`~rankfunnel.rerank.depth.DepthPolicy` applied with ``rerank="auto"``.
        variants: an A/B split, ``{name: (reranker, weight)}``: each search goes to one variant, sticky by a
            hash of its key (``search(key=...)``, e.g. a user id; else the query), each variant getting about
            its weight's share; the reranker ``"primary"`` means this pipeline's own stage 2, ``None`` stage 1
            only. Results name the variant (``SearchResult.variant``). Variants share the other options.

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
        retriever: str = defaults.RETRIEVER,
        top_k: int = defaults.TOP_K,
        top_n: int = defaults.TOP_N,
        reason: str | None = None,
        fallbacks: Sequence[BaseReranker] = (),
        cache: ScoreCache | str | Path | None = None,
        deadline_ms: float | None = None,
        attempt_timeout_ms: float | None = None,
        fail_open: bool = defaults.FAIL_OPEN,
        auto_margin: float = defaults.AUTO_MARGIN,
        stage2: Stage2 | None = None,
        shadow: Shadow | None = None,
        depth_policy: Any = None,
        variants: Mapping[str, tuple[BaseReranker | str | None, float]] | None = None,
    ) -> None:
        self.collection = collection
        self.shadow = shadow
        self.retriever = check_retriever(retriever)
        self.top_k = check_count(top_k, field="top_k")
        self.top_n = check_count(top_n, field="top_n")
        shared: dict[str, Any] = {
            "cache": open_cache(cache), "deadline_ms": deadline_ms, "attempt_timeout_ms": attempt_timeout_ms,
            "fail_open": fail_open, "auto_margin": auto_margin, "depth": depth_policy,
        }
        if stage2 is None:
            stage2 = Stage2(reranker, fallbacks=fallbacks, reason=reason, **shared)
        self.stage2 = stage2
        self.variant_split: VariantSplit | None = None
        self.variant_stage2: dict[str, Stage2] = {}
        if variants:
            self.variant_split = VariantSplit({name: weight for name, (_, weight) in variants.items()})
            for name, (model, _) in variants.items():
                if model == PRIMARY:
                    self.variant_stage2[name] = self.stage2
                elif isinstance(model, str):
                    raise InvalidInputError(
                        f"variant {name!r}: pass a reranker object, None (stage 1) or 'primary', not {model!r}; "
                        "load it with rankfunnel.rerank.load_reranker."
                    )
                elif model is None:
                    self.variant_stage2[name] = Stage2(None, reason=f"variant {name!r} is stage 1 only", **shared)
                else:
                    self.variant_stage2[name] = Stage2(model, **shared)

    @property
    def reranker(self) -> BaseReranker | None:
        """The primary reranker (None: stage 1 only)."""
        return self.stage2.chain[0] if self.stage2.chain else None

    @property
    def reason(self) -> str | None:
        """Why there is no reranker, when there is none."""
        return self.stage2.reason

    @classmethod
    def from_dir(
        cls,
        index_dir: str | Path,
        reranker: str | BaseReranker | None = defaults.RERANKER,
        *,
        embedder: Embedder | None = None,
        backend: str = "auto",
        device: str | None = None,
        retriever: str = defaults.RETRIEVER,
        top_k: int = defaults.TOP_K,
        top_n: int = defaults.TOP_N,
        collection_options: dict[str, Any] | None = None,
        offline: bool | None = None,
        trained: str | Path | None = None,
        domain: str | None = None,
        reranker_options: Mapping[str, Any] | None = None,
        fallbacks: Sequence[str | BaseReranker] = (),
        **stage2_options: Any,
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
            fallbacks: rerankers (names or objects) tried when the previous one fails; one that cannot be
                loaded is left out with a warning.
            stage2_options: ``cache``, ``deadline_ms``, ``attempt_timeout_ms``, ``fail_open``,
                ``auto_margin`` (see :class:`Pipeline`).

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
        chain = load_fallbacks(
            fallbacks, device=device, index_dir=index_dir, offline=offline, **dict(reranker_options or {})
        )
        return cls(
            collection, model, retriever=retriever, top_k=top_k, top_n=top_n, reason=reason,
            fallbacks=chain, **stage2_options,
        )

    # -- searching ------------------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        top_k: int | None = None,
        top_n: int | None = None,
        retriever: str | None = None,
        filter: Filter | None = None,
        rerank: bool | str = defaults.RERANK,
        deadline_ms: float | None = None,
        key: str | None = None,
    ) -> SearchResult:
        """Search one query: stage-1 ``top_k`` candidates, reranked, best ``top_n`` returned.

        Timings (ms) in ``timings_ms``: ``stage1_ms``, ``rerank_ms`` (0 when not reranked), ``total_ms``.

        Examples:
            >>> res = pipe.search("list index out of range", top_k=50, top_n=5)  # doctest: +SKIP
            >>> res.hits[0].id, res.reranked  # doctest: +SKIP
            ('code-03', True)
        """
        return self.search_many(
            [query], top_k=top_k, top_n=top_n, retriever=retriever, filter=filter, rerank=rerank,
            deadline_ms=deadline_ms, keys=None if key is None else [key],
        )[0]

    def search_many(
        self,
        queries: Sequence[str],
        *,
        top_k: int | None = None,
        top_n: int | None = None,
        retriever: str | None = None,
        filter: Filter | None = None,
        rerank: bool | str = defaults.RERANK,
        deadline_ms: float | None = None,
        query_ids: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """Search several queries: one batched stage-1 encoding and one stage-2 scoring call over all pairs.

        The results equal those of :meth:`search` called per query. Each result's ``timings_ms`` are those
        of the whole batch (with ``batch_queries`` giving its size). ``rerank`` is True, False or ``"auto"``
        (skip stage 2 per query when stage 1 is confident). ``deadline_ms`` (capped by the pipeline's own)
        covers the whole call, stage 1 included: stage 2 gets what stage 1 left. ``query_ids`` (optional, one
        per query) only label the shadow's records (to match qrels in ``rankfunnel shadow-report``). With an
        A/B split (``variants``), ``keys`` (one per query, e.g. user ids; default the queries) pick the variant.

        Examples:
            >>> [r.hits[0].id for r in pipe.search_many(["q1", "q2"])]  # doctest: +SKIP
            ['d7', 'd2']
        """
        t0 = time.perf_counter()
        deadline = self.stage2.deadline(deadline_ms)
        queries = check_queries(queries)
        if not queries:
            return []
        if query_ids is not None and len(query_ids) != len(queries):
            raise InvalidInputError(f"query_ids must match queries: {len(query_ids)} ids, {len(queries)} queries.")
        if keys is not None and len(keys) != len(queries):
            raise InvalidInputError(f"keys must match queries: {len(keys)} keys, {len(queries)} queries.")
        k = check_count(top_k if top_k is not None else self.top_k, field="top_k")
        n = check_count(top_n if top_n is not None else self.top_n, field="top_n")
        ret = check_retriever(retriever if retriever is not None else self.retriever)
        if rerank not in (True, False, "auto"):
            raise InvalidInputError(f'rerank must be True, False or "auto", got {rerank!r}.')

        candidates = self._stage1(queries, k, ret, filter)
        t1 = time.perf_counter()
        picked: list[str | None] = [None] * len(queries)
        if self.variant_split is None:
            out = self.stage2.run(queries, candidates, n, deadline=deadline, rerank=rerank)
        else:  # one stage-2 run per variant over its queries, answers put back in query order
            picked = [self.variant_split.pick(keys[i] if keys is not None else q) for i, q in enumerate(queries)]
            answers: list[Any] = [None] * len(queries)
            for name in dict.fromkeys(v for v in picked if v is not None):
                idx = [i for i, v in enumerate(picked) if v == name]
                got = self.variant_stage2[name].run(
                    [queries[i] for i in idx], [candidates[i] for i in idx], n, deadline=deadline, rerank=rerank
                )
                for i, r in zip(idx, got, strict=True):
                    answers[i] = r
            out = answers
        t2 = time.perf_counter()
        if self.shadow is not None:  # after the answer is built; offer() only enqueues, never blocks
            for i, (q, r) in enumerate(zip(queries, out, strict=True)):
                self.shadow.offer(q, candidates[i], r.hits, query_id=query_ids[i] if query_ids else None)
        results = []
        for q, r, variant in zip(queries, out, picked, strict=True):
            timings = {"stage1_ms": (t1 - t0) * 1e3, **r.timings_ms, "total_ms": (t2 - t0) * 1e3}
            if len(queries) > 1:
                timings["batch_queries"] = float(len(queries))
            results.append(
                SearchResult(
                    query=q,
                    hits=r.hits,
                    reranked=r.reranked,
                    retriever=ret,
                    reranker=r.model,
                    reason=r.reason,
                    timings_ms=timings,
                    variant=variant,
                )
            )
        return results

    def close(self) -> None:
        """Flush and stop the shadow (if any): records still queued are written first."""
        if self.shadow is not None:
            self.shadow.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stage1(self, queries: list[str], k: int, retriever: str, filter: Filter | None) -> list[list[Hit]]:
        out = self.collection.search_many(queries, k=k, retriever=retriever, filter=filter)
        return [list(h) for h in out]


def open_cache(cache: ScoreCache | str | Path | None) -> ScoreCache | None:
    """A score cache from a :class:`ScoreCache` (returned as is), a SQLite path, or None (no cache)."""
    if cache is None or isinstance(cache, ScoreCache):
        return cache
    return ScoreCache(maxsize=defaults.CACHE_SIZE, ttl_s=defaults.CACHE_TTL_S, path=cache)


def load_fallbacks(
    specs: Sequence[str | BaseReranker],
    *,
    device: str | None = None,
    index_dir: str | Path | None = None,
    **load_options: Any,
) -> list[BaseReranker]:
    """Load a fallback chain; a member that cannot be loaded is left out with a warning (never raises).

    ``load_options`` go to :func:`rankfunnel.rerank.resolve.load_reranker_or_reason` (``offline``, ``route``,
    ``api_key``...).
    """
    chain: list[BaseReranker] = []
    for spec in specs:
        model, _why = load_reranker_or_reason(spec, device=device, **load_options)
        if model is None:
            continue  # load_reranker_or_reason warned already (or the spec was "none")
        if isinstance(spec, str) and index_dir is not None:
            apply_stored_calibration(model, index_dir)
        chain.append(model)
    return chain
