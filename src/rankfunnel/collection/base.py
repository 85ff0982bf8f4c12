"""What every collection backend shares.

The one-query and upsert forms, context management, batch checks, the not-found error, and stage-1 ranking
(ties, fusion, cut to ``k``, hits ranked 1..k).

:class:`CollectionMixin` gives ``search``, ``upsert`` and the context manager on top of a backend's
``search_many``, ``add`` and ``close``, so those forms exist once; :func:`rank_runs` and :func:`to_hits` are
the ranking of the faiss and the memory backends (Milvus ranks inside the server, then uses :func:`to_hits`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

from rankfunnel.errors import DocumentNotFoundError, InvalidInputError
from rankfunnel.fusion import FusionConfig
from rankfunnel.types import Document, Hit


class CollectionMixin:
    """``search``, ``upsert``, ``with`` on top of ``search_many``, ``add`` and ``close``."""

    def search_many(
        self,
        queries: Sequence[str],
        *,
        k: int = 100,
        retriever: str = "dense",
        filter: Mapping[str, Any] | None = None,
        fusion: FusionConfig | None = None,
    ) -> list[list[Hit]]:  # pragma: no cover - every backend implements it
        raise NotImplementedError

    def add(
        self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
    ) -> int:  # pragma: no cover - every backend implements it
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every backend implements it
        raise NotImplementedError

    def search(
        self,
        query: str,
        *,
        k: int = 100,
        retriever: str = "dense",
        filter: Mapping[str, Any] | None = None,
        fusion: FusionConfig | None = None,
    ) -> list[Hit]:
        """Stage-1 search for one query: the top ``k`` hits (all matching documents when there are fewer).

        Args:
            query: Non-empty text.
            k: Hits to return (1..:data:`rankfunnel.validate.MAX_K`).
            retriever: ``dense``, ``bm25`` or ``hybrid``.
            filter: Metadata equality filter, e.g. ``{"lang": "en"}``; a list value matches any item, dots
                address nested keys.
            fusion: Override the collection's fusion settings for hybrid.

        Raises:
            InvalidInputError: empty or unencodable query, bad k, unknown retriever, bad filter, or an empty
                collection.

        Examples:
            >>> col.search("apples", k=5, retriever="hybrid", filter={"lang": "en"})  # doctest: +SKIP
        """
        return self.search_many([query], k=k, retriever=retriever, filter=filter, fusion=fusion)[0]

    def upsert(self, docs: Iterable[Document], *, show_progress: bool | None = None) -> int:
        """``add(docs, upsert=True)``: insert new ids, replace existing ones."""
        return self.add(docs, upsert=True, show_progress=show_progress)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_unique_ids(docs: Sequence[Document]) -> list[str]:
    """The ids of one ``add`` batch, refusing an id that appears twice."""
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise InvalidInputError(f"Duplicate ids in one batch: {dups[:10]}. Each id may appear once per add.")
    return ids


def already_stored(clash: Iterable[str]) -> InvalidInputError:
    """The error for ids that ``add`` without ``upsert`` finds already stored."""
    ids = sorted(clash)
    return InvalidInputError(
        f"{len(ids)} ids are already stored (e.g. {ids[:5]}); pass upsert=True (CLI: --upsert) to replace "
        "them, or delete them first."
    )


def not_found(missing: Sequence[str], where: str, *, deleting: bool = False) -> DocumentNotFoundError:
    """The error for ids a collection does not hold; ``delete`` adds that nothing was deleted."""
    also = " Nothing was deleted;" if deleting else ""
    return DocumentNotFoundError(
        f"{len(missing)} ids are not in {where}: {list(missing)[:10]}.{also} check the ids (collection.ids())."
    )


def ranked(run: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """``(id, score)`` by score descending, then id: the same order whatever order an index returned ties in."""
    return sorted(run, key=lambda item: (-item[1], item[0]))


def rank_runs(
    dense: list[tuple[str, float]] | None,
    lexical: list[tuple[str, float]] | None,
    retriever: str,
    fusion: FusionConfig,
    k: int,
) -> list[tuple[str, float]]:
    """One query's final stage-1 ranking from its dense and/or BM25 runs (already :func:`ranked`)."""
    if retriever == "hybrid":
        return fusion.fuse(dense or [], lexical or [])[:k]
    return ((dense if retriever == "dense" else lexical) or [])[:k]


def to_hits(ranking: Sequence[tuple[str, float]], docs: Mapping[str, Document]) -> list[Hit]:
    """Hits ranked 1..k with ``stage1_rank``/``stage1_score`` set and the document filled in."""
    return [
        Hit(id=i, rank=r, score=s, stage1_rank=r, stage1_score=s, document=docs[i])
        for r, (i, s) in enumerate(ranking, start=1)
    ]


def hybrid_depth(k: int, retriever: str, fusion: FusionConfig, n: int) -> int:
    """How many candidates each side fetches: ``fusion.candidates * k`` (at most ``n``) for hybrid, else k."""
    return min(k * fusion.candidates, n) if retriever == "hybrid" else k
