"""Result and input types: frozen, slotted dataclasses so that equality is meaningful in tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The stage-1 retrievers every collection implements.
RETRIEVERS: tuple[str, ...] = ("dense", "bm25", "hybrid")


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A document to index. ``id`` is the caller's stable key; ``metadata`` holds JSON-serialisable values."""

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str:
        """Title and text joined the way embedders, BM25 and rerankers read them."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """One ranked document.

    ``rank`` (1-based) and ``score`` are final: after reranking, ``score`` is the normalised 0-1 rerank score;
    without reranking it is the stage-1 score. ``rerank_score`` keeps the raw reranker output (e.g. a logit).
    """

    id: str
    rank: int
    score: float
    stage1_rank: int
    stage1_score: float
    rerank_score: float | None = None
    document: Document | None = None
    #: Hybrid stage 1: the 1-based rank each retriever gave this document before fusion (``{"dense": 3,
    #: "bm25": 1}``; a retriever that did not return it is absent). None for a single retriever, or where the
    #: backend fuses internally (Milvus ``hybrid_search``). Read by the adaptive-depth agreement signals.
    stage1_ranks: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    """The answer to one query, with per-stage timings in milliseconds.

    ``reranked`` is False when stage 2 was disabled, skipped or failed; ``reason`` then says why.
    """

    query: str
    hits: tuple[Hit, ...]
    reranked: bool
    retriever: str
    reranker: str | None = None
    reason: str | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    variant: str | None = None  # the A/B variant that answered (Pipeline(variants=...)); None without a split

    def to_dict(self, *, with_text: bool = False) -> dict[str, Any]:
        """The JSON shape used by ``rankfunnel search --json`` and the service."""
        hits = []
        for h in self.hits:
            row: dict[str, Any] = {
                "id": h.id,
                "rank": h.rank,
                "stage1_rank": h.stage1_rank,
                "stage1_score": h.stage1_score,
                "rerank_score": h.rerank_score,
                "score": h.score,
            }
            if with_text and h.document is not None:
                row["title"] = h.document.title
                row["text"] = h.document.text
                row["metadata"] = dict(h.document.metadata)
            hits.append(row)
        return {
            "query": self.query,
            "retriever": self.retriever,
            "reranker": self.reranker,
            "reranked": self.reranked,
            "reason": self.reason,
            "hits": hits,
            "timings_ms": dict(self.timings_ms),
            **({"variant": self.variant} if self.variant is not None else {}),
        }
