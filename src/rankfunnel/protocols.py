"""The pluggable roles, one Protocol each, with one main verb.

- :class:`Embedder` ``encode(texts) -> (n, dim) float32``, rows L2-normalised.
- :class:`Collection` stores documents and answers stage-1 searches (dense, bm25 or hybrid).
  Implementations: :class:`rankfunnel.collection.LocalCollection` (SQLite + Faiss + bm25s),
  :class:`rankfunnel.collection.milvus.MilvusCollection` and :class:`rankfunnel.collection.MemoryCollection`.
- :class:`Reranker` ``predict(pairs) -> raw scores``; ranking helpers live on
  :class:`rankfunnel.rerank.base.BaseReranker`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, Self, runtime_checkable

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
    """A document collection that answers stage-1 searches: everything the pipeline, CLI and service use.

    Implementations: :class:`rankfunnel.collection.LocalCollection` (SQLite + Faiss + bm25s),
    :class:`rankfunnel.collection.milvus.MilvusCollection` and the in-memory
    :class:`rankfunnel.collection.MemoryCollection`; ``tests/collection/test_contract.py`` runs one suite
    against all of them. Semantics every implementation keeps:

    - ``search``/``search_many`` return hits ranked 1..k (fewer when fewer documents match) with
      ``rank == stage1_rank``, ``score == stage1_score``, ``rerank_score`` None and ``document`` filled in;
      equal scores are ordered by id; ``bm25`` returns only documents sharing a term with the query;
      ``hybrid`` fuses both runs with :class:`rankfunnel.fusion.FusionConfig`.
    - ``add`` refuses an id twice in one batch and, without ``upsert``, an id already stored; ``delete`` is
      all or none (:class:`~rankfunnel.errors.DocumentNotFoundError` names missing ids); ``get`` returns
      documents in the order asked.
    - Bad input (see :mod:`rankfunnel.validate`) raises :class:`~rankfunnel.errors.InvalidInputError`, and
      so does searching an empty collection.
    """

    embedder: Embedder

    def add(self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
            ) -> int: ...

    def upsert(self, docs: Iterable[Document], *, show_progress: bool | None = None) -> int: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def get(self, ids: Sequence[str]) -> list[Document]: ...

    def ids(self) -> list[str]: ...

    def search(self, query: str, *, k: int = 100, retriever: str = "dense", filter: Filter | None = None
               ) -> list[Hit]: ...

    def search_many(self, queries: Sequence[str], *, k: int = 100, retriever: str = "dense",
                    filter: Filter | None = None) -> list[list[Hit]]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def __len__(self) -> int: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, document) pairs; higher raw score means more relevant."""

    name: str

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...

    def normalise(self, raw: np.ndarray) -> np.ndarray: ...
