"""MemoryCollection: the in-memory, deterministic :class:`~rankfunnel.protocols.Collection` fake.

Nothing touches the disk and no Faiss index is built: documents live in a dict, dense search is an exact
inner product over a numpy matrix, BM25 is the same :class:`rankfunnel.lexical.BM25Index` the faiss backend
uses (built lazily after a change), and ranking, ties, fusion and errors come from the same code
(:mod:`rankfunnel.collection.base`, :mod:`rankfunnel.validate`), so on exact search it returns what a flat
:class:`~rankfunnel.collection.LocalCollection` with the same embedder returns. For tests, examples and
small corpora; ``tests/collection/test_contract.py`` holds it to the same suite as the real backends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from rankfunnel.collection.base import (
    CollectionMixin,
    already_stored,
    check_unique_ids,
    hybrid_depth,
    not_found,
    rank_runs,
    ranked,
    source_ranks,
    to_hits,
)
from rankfunnel.embed import HashingEmbedder, check_same_embedder
from rankfunnel.errors import IndexMismatchError, InvalidInputError
from rankfunnel.fusion import FusionConfig
from rankfunnel.lexical import BM25Index
from rankfunnel.protocols import Embedder
from rankfunnel.types import Document, Hit
from rankfunnel.validate import check_document


def _matches(metadata: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    """Metadata equality as the stores apply it: a list means any of; dots address nested keys; 1 != True."""
    for key, want in flt.items():
        value: Any = metadata
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                value = _ABSENT
                break
            value = value[part]
        options = list(want) if isinstance(want, list | tuple | set | frozenset) else [want]
        if not any(_same(value, w) for w in options):
            return False
    return True


_ABSENT = object()


def _same(value: Any, want: Any) -> bool:
    if want is None:
        return value is None
    if isinstance(want, bool) or isinstance(value, bool):  # JSON true is not 1
        return isinstance(want, bool) and isinstance(value, bool) and value == want
    if isinstance(want, str) or isinstance(value, str):
        return isinstance(want, str) and isinstance(value, str) and value == want
    return isinstance(value, int | float) and value == want


class MemoryCollection(CollectionMixin):
    """Documents in memory, searched densely (exact inner product), lexically (BM25) or both (fused).

    Args:
        embedder: Default ``HashingEmbedder(64)`` (deterministic, no model to load).
        docs: Documents to add at once.
        fusion: Default fusion for ``retriever="hybrid"``.

    Examples:
        >>> col = MemoryCollection(docs=[Document(id="a", text="red apples"), Document(id="b", text="pears")])
        >>> [h.id for h in col.search("apples", k=1, retriever="bm25")]
        ['a']
        >>> len(col), col.info()["backend"]
        (2, 'memory')
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        docs: Iterable[Document] = (),
        fusion: FusionConfig | None = None,
    ) -> None:
        self._embedder: Embedder = embedder if embedder is not None else HashingEmbedder(64)
        self.dim = int(self._embedder.dim)
        self.fusion = fusion or FusionConfig()
        self._lock = threading.RLock()
        self._docs: dict[str, Document] = {}
        self._keys: dict[str, int] = {}  # id -> key; keys are never reused (as in the faiss backend)
        self._vectors: dict[str, np.ndarray] = {}
        self._next_key = 0
        self._generation = 0
        self._bm25: BM25Index | None = None
        self._closed = False
        self.add(docs)

    def __repr__(self) -> str:
        return f"MemoryCollection(embedder={self._embedder.name!r}, docs={len(self)})"

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        """Swap the encoder for one giving the same vectors (e.g. a ``PooledEmbedder`` around it)."""
        check_same_embedder(embedder, self._embedder.name, self.dim)
        self._embedder = embedder

    def close(self) -> None:
        """Nothing to release; kept for the Collection contract (``with MemoryCollection() as col``)."""
        self._closed = True

    # -- writes ----------------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self._embedder.encode(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise IndexMismatchError(
                f"The embedder returned shape {vectors.shape}, expected ({len(texts)}, {self.dim})."
            )
        return vectors

    def add(
        self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
    ) -> int:
        """Embed and store ``docs``, all or none; returns how many were written."""
        items = [check_document(d, i) for i, d in enumerate(docs)]
        if not items:
            return 0
        ids = check_unique_ids(items)
        with self._lock:
            clash = [i for i in ids if i in self._docs]
            if clash and not upsert:
                raise already_stored(clash)
            vectors = self._encode([d.content for d in items])
            for doc, vec in zip(items, vectors, strict=True):
                self._docs.pop(doc.id, None)  # an upsert moves the document to the end, with a new key
                self._docs[doc.id] = doc
                self._keys[doc.id] = self._next_key
                self._vectors[doc.id] = vec
                self._next_key += 1
            self._changed()
        return len(items)

    def _delete(self, ids: list[str]) -> int:
        with self._lock:
            missing = [i for i in ids if i not in self._docs]
            if missing:
                raise not_found(missing, self._where, deleting=True)
            for i in ids:
                del self._docs[i], self._keys[i], self._vectors[i]
            self._changed()
        return len(ids)

    def _changed(self) -> None:
        self._generation += 1
        self._bm25 = None

    # -- reads -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._docs)

    def ids(self) -> list[str]:
        """All document ids, in insertion order (an upsert moves a document to the end)."""
        with self._lock:
            return list(self._docs)

    def _documents(self, ids: list[str]) -> dict[str, Document]:
        with self._lock:
            return {i: self._docs[i] for i in ids if i in self._docs}

    def info(self) -> dict[str, Any]:
        """Backend, embedder, fusion defaults, counts and generation."""
        return {
            "backend": "memory",
            "embedder": {"name": self._embedder.name, "dim": self.dim},
            "fusion": self.fusion.to_dict(),
            "documents": len(self),
            "generation": self._generation,
        }

    def _lexical(self) -> BM25Index:
        if self._bm25 is None:
            order = sorted(self._docs, key=self._keys.__getitem__)
            keys = np.asarray([self._keys[i] for i in order], dtype=np.int64)
            self._bm25 = BM25Index.build([(keys, [self._docs[i].content for i in order])],
                                         generation=self._generation)
        return self._bm25

    def _search_many(
        self, queries: list[str], k: int, retriever: str, filter: Mapping[str, Any] | None, fusion: FusionConfig
    ) -> list[list[Hit]]:
        qs, cfg = queries, fusion
        qvecs = self._encode(qs) if retriever != "bm25" else None
        with self._lock:
            if not self._docs:
                raise InvalidInputError(
                    "The memory collection is empty: add documents (collection.add(...)) before searching."
                )
            allowed = [i for i, d in self._docs.items() if not filter or _matches(d.metadata, filter)]
            if not allowed:
                return [[] for _ in qs]
            depth = hybrid_depth(k, retriever, cfg, len(self._docs))
            id_of = {self._keys[i]: i for i in self._docs}
            keys = np.asarray(sorted(self._keys[i] for i in allowed), dtype=np.int64)
            matrix = np.stack([self._vectors[id_of[key]] for key in keys])
            rankings = []
            sources: list[dict[str, dict[str, int]] | None] = []
            for qi, q in enumerate(qs):
                dense = None
                if qvecs is not None:
                    scores = matrix @ qvecs[qi]
                    dense = ranked((id_of[int(key)], float(s)) for key, s in zip(keys, scores, strict=True))
                    dense = dense[:depth]
                lexical = None
                if retriever != "dense":
                    lexical = ranked((id_of[key], s) for key, s in self._lexical().search(q, depth, keys))
                rankings.append(rank_runs(dense, lexical, retriever, cfg, k))
                sources.append(source_ranks(dense, lexical) if retriever == "hybrid" else None)
            return [to_hits(r, self._docs, src) for r, src in zip(rankings, sources, strict=True)]
