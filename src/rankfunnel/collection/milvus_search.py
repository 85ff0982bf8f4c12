"""Stage-1 search of :class:`rankfunnel.collection.milvus.MilvusCollection` (dense, BM25, hybrid, filtered)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from rankfunnel.collection.base import CollectionMixin, ranked, source_ranks, to_hits
from rankfunnel.collection.milvus_schema import doc_from_row
from rankfunnel.collection.milvus_support import LocalBM25, filter_expression
from rankfunnel.errors import InvalidInputError
from rankfunnel.fusion import FusionConfig
from rankfunnel.protocols import Embedder, Filter
from rankfunnel.types import Document, Hit
from rankfunnel.validate import MAX_K

T = TypeVar("T")
OUT_FIELDS = ["title", "content", "metadata"]


class MilvusSearchMixin(CollectionMixin):
    """Search methods; the collection class provides the client, the embedder and the helpers below."""

    name: str
    fusion: FusionConfig
    search_params: dict[str, Any]
    bm25_mode: str
    _pm: Any
    _client: Any
    _local_bm25: LocalBM25

    @property
    def embedder(self) -> Embedder:  # pragma: no cover - provided by MilvusCollection
        raise NotImplementedError

    def _call(self, fn: Callable[[], T], what: str) -> T:  # pragma: no cover - provided by MilvusCollection
        raise NotImplementedError

    def _fetch(self, ids: Sequence[str], fields: list[str] | None = None) -> list[Document]:
        # provided by MilvusCollection
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - provided by MilvusCollection
        raise NotImplementedError

    # -- search -----------------------------------------------------------------------------------------
    def _search_many(
        self, queries: list[str], k: int, retriever: str, filter: Filter | None, fusion: FusionConfig
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query; one Milvus request per retriever.

        ``filter`` is translated to an escaped Milvus expression applied inside the search. ``hybrid`` with
        equal-weight RRF runs as one Milvus ``hybrid_search`` (RRFRanker); other fusions run both searches
        in Milvus and fuse them with :class:`~rankfunnel.fusion.FusionConfig`, like the faiss backend.
        """
        expr = filter_expression(filter)
        cfg = fusion
        if retriever == "dense":
            out = [self._hits(r) for r in self._dense(queries, k, expr)]
        elif retriever == "bm25" and self.bm25_mode == "milvus":
            out = [self._hits(r, bm25=True) for r in self._native_bm25(queries, k, expr, OUT_FIELDS)]
        elif retriever == "bm25":
            out = self._from_scores(self._fallback_bm25(queries, k, expr))
        elif self.bm25_mode == "milvus" and cfg.method == "rrf" and cfg.dense_weight == cfg.bm25_weight:
            out = [
                self._hits(r) for r in self._native_hybrid(queries, k, k * cfg.candidates, cfg.rrf_k, expr)
            ]
        else:  # weighted or score-based fusion: two Milvus searches, fused here exactly like LocalCollection
            depth = min(k * cfg.candidates, MAX_K)
            dense = [
                [(str(h["id"]), float(h["distance"])) for h in run]
                for run in self._dense(queries, depth, expr, fields=[])
            ]
            if self.bm25_mode == "milvus":
                lexical = [
                    [(str(h["id"]), abs(float(h["distance"]))) for h in run]
                    for run in self._native_bm25(queries, depth, expr, [])
                ]
            else:
                lexical = self._fallback_bm25(queries, depth, expr)
            out = self._from_scores(
                [
                    [(str(i), float(sc)) for i, sc in cfg.fuse(d, b_)[:k]]
                    for d, b_ in zip(dense, lexical, strict=True)
                ],
                [source_ranks(d, b_) for d, b_ in zip(dense, lexical, strict=True)],
            )
        if not expr and not any(out) and len(self) == 0:
            raise InvalidInputError(
                f"Milvus collection {self.name!r} is empty: add documents "
                "(collection.add(...) or `rankfunnel index --backend milvus`) before searching."
            )
        return out

    def _sp(self, metric: str) -> dict[str, Any]:
        return (
            {"metric_type": metric, "params": self.search_params}
            if metric == "IP"
            else {"metric_type": metric}
        )

    def _ann(self, data: list[Any], field: str, metric: str, k: int, expr: str, fields: list[str], what: str
             ) -> Any:
        return self._call(
            lambda: self._client.search(
                self.name, data=data, anns_field=field, limit=k, filter=expr, output_fields=fields,
                search_params=self._sp(metric),
            ),
            what,
        )

    def _dense(self, queries: Sequence[str], k: int, expr: str, fields: list[str] | None = None) -> Any:
        vecs = self.embedder.encode(list(queries)).tolist()
        return self._ann(vecs, "vector", "IP", k, expr, OUT_FIELDS if fields is None else fields, "search")

    def _native_bm25(self, queries: Sequence[str], k: int, expr: str, fields: list[str]) -> Any:
        return self._ann(list(queries), "sparse", "BM25", k, expr, fields, "run BM25 search")

    def _native_hybrid(self, queries: Sequence[str], k: int, depth: int, rrf_k: float, expr: str) -> Any:
        pm = self._pm
        cand = min(depth, MAX_K)
        reqs = [
            pm.AnnSearchRequest(
                data=self.embedder.encode(list(queries)).tolist(),
                anns_field="vector",
                param=self._sp("IP"),
                limit=cand,
                expr=expr or None,
            ),
            pm.AnnSearchRequest(
                data=list(queries), anns_field="sparse", param=self._sp("BM25"), limit=cand, expr=expr or None
            ),
        ]
        return self._call(
            lambda: self._client.hybrid_search(
                self.name, reqs, ranker=pm.RRFRanker(int(rrf_k)), limit=k, output_fields=OUT_FIELDS
            ),
            "run hybrid search",
        )

    def _fallback_bm25(self, queries: Sequence[str], k: int, expr: str) -> list[list[tuple[str, float]]]:
        allowed = None
        if expr:
            rows = self._call(
                lambda: self._client.query(self.name, filter=expr, output_fields=["id"]), "filter"
            )
            allowed = {str(r["id"]) for r in rows}
        return self._local_bm25.search(queries, k, allowed)

    def _hits(self, rows: Iterable[dict[str, Any]], bm25: bool = False) -> list[Hit]:
        # Milvus Lite reports BM25 as a negated distance, a Milvus server as a positive score: both rank
        # best first, and BM25 scores are never negative, so abs() gives the score on both.
        scored = [(str(row["id"]), abs(float(row["distance"])) if bm25 else float(row["distance"]), row)
                  for row in rows]
        docs = {}
        for doc_id, _, row in scored:
            ent = dict(row.get("entity") or {})
            ent["id"] = row["id"]
            docs[doc_id] = doc_from_row(ent)
        return to_hits(ranked((doc_id, score) for doc_id, score, _ in scored), docs)  # ties: by id

    def _from_scores(
        self, lists: list[list[tuple[str, float]]], sources: list[dict[str, dict[str, int]]] | None = None
    ) -> list[list[Hit]]:
        docs = {d.id: d for d in self._fetch(list(dict.fromkeys(i for lst in lists for i, _ in lst)))}
        # an id deleted since the BM25 cache was built is skipped
        return [
            to_hits([(i, s) for i, s in lst if i in docs], docs, None if sources is None else sources[n])
            for n, lst in enumerate(lists)
        ]
