"""The pluggable roles, one Protocol each, with one main verb.

- :class:`Embedder` ``encode(texts) -> (n, dim) float32``, rows L2-normalised.
- :class:`Collection` stores documents and answers stage-1 searches (dense, bm25 or hybrid).
  Implementations: :class:`rankfunnel.collection.LocalCollection` (SQLite + Faiss + bm25s) and
  :class:`rankfunnel.collection.milvus.MilvusCollection`.
- :class:`Reranker` ``predict(pairs) -> raw scores``; ranking helpers live on
  :class:`rankfunnel.rerank.base.BaseReranker`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from rankfunnel.types import RETRIEVERS, Document, Hit

RetrieverName = Literal["dense", "bm25", "hybrid"]
Filter = Mapping[str, Any]

__all__ = ["RETRIEVERS", "Collection", "Embedder", "Filter", "Reranker", "RetrieverName"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
               ) -> np.ndarray: ...


@runtime_checkable
class Collection(Protocol):
    """A document collection that answers stage-1 searches.

    ``search`` returns hits ranked 1..k with ``stage1_rank``/``stage1_score`` set, ``rerank_score`` None,
    and ``document`` filled in.
    """

    def add(self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
            ) -> int: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def get(self, ids: Sequence[str]) -> list[Document]: ...

    def search(self, query: str, *, k: int = 100, retriever: str = "dense", filter: Filter | None = None
               ) -> list[Hit]: ...

    def __len__(self) -> int: ...


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, document) pairs; higher raw score means more relevant."""

    name: str

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...

    def normalise(self, raw: np.ndarray) -> np.ndarray: ...
