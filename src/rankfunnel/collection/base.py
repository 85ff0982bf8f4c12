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
from rankfunnel.validate import check_count, check_filter, check_ids, check_queries, check_retriever


class CollectionMixin:
    """The public forms of the contract, on top of a backend's ``add``, ``close`` and the hooks below.

    Every search, ``get`` and ``delete`` is validated here (:mod:`rankfunnel.validate`) before the backend
    sees it, so the checks and messages are the same on every backend. A backend implements
    ``_search_many`` (queries already checked, ``fusion`` resolved), ``_documents`` (the stored ones among
    some ids) and ``_delete`` (unique ids; all or none).
    """

    fusion: FusionConfig
    #: How messages name the collection ("the collection", "Milvus collection 'x'").
    _where: str = "the collection"

    def add(
        self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
    ) -> int:  # pragma: no cover - every backend implements it
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every backend implements it
        raise NotImplementedError

    def _search_many(
        self, queries: list[str], k: int, retriever: str, filter: Mapping[str, Any] | None, fusion: FusionConfig
    ) -> list[list[Hit]]:  # pragma: no cover - every backend implements it
        raise NotImplementedError

    def _documents(self, ids: list[str]) -> dict[str, Document]:  # pragma: no cover - every backend has it
        raise NotImplementedError

    def _delete(self, ids: list[str]) -> int:  # pragma: no cover - every backend implements it
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

    def search_many(
        self,
        queries: Sequence[str],
        *,
        k: int = 100,
        retriever: str = "dense",
        filter: Mapping[str, Any] | None = None,
        fusion: FusionConfig | None = None,
    ) -> list[list[Hit]]:
        """:meth:`search` for many queries at once (one batched embedding, one request per retriever)."""
        qs = check_queries(queries)
        k = check_count(k, field="k")
        retriever = check_retriever(retriever)
        filter = check_filter(filter)
        if not qs:
            return []
        return self._search_many(qs, k, retriever, filter, fusion or self.fusion)

    def upsert(self, docs: Iterable[Document], *, show_progress: bool | None = None) -> int:
        """``add(docs, upsert=True)``: insert new ids, replace existing ones."""
        return self.add(docs, upsert=True, show_progress=show_progress)

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Documents by id, in the order asked; raises DocumentNotFoundError naming missing ids."""
        wanted = check_ids(ids, verb="get")
        unique = list(dict.fromkeys(wanted))
        found = self._documents(unique) if unique else {}
        missing = [i for i in unique if i not in found]
        if missing:
            raise not_found(missing, self._where)
        return [found[i] for i in wanted]

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id, all or none; returns how many were deleted.

        Raises:
            DocumentNotFoundError: some ids are not stored (they are named); nothing is deleted then.
        """
        wanted = list(dict.fromkeys(check_ids(ids, verb="delete")))
        return self._delete(wanted) if wanted else 0

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


def source_ranks(
    dense: Sequence[tuple[str, float]] | None, lexical: Sequence[tuple[str, float]] | None
) -> dict[str, dict[str, int]]:
    """Per document id, the 1-based rank each retriever gave it before fusion (for ``Hit.stage1_ranks``).

    Examples:
        >>> source_ranks([("a", 0.9), ("b", 0.5)], [("b", 7.0)])
        {'a': {'dense': 1}, 'b': {'dense': 2, 'bm25': 1}}
    """
    out: dict[str, dict[str, int]] = {}
    for name, run in (("dense", dense), ("bm25", lexical)):
        for rank, (doc_id, _) in enumerate(run or [], start=1):
            out.setdefault(doc_id, {}).setdefault(name, rank)
    return out


def to_hits(
    ranking: Sequence[tuple[str, float]],
    docs: Mapping[str, Document],
    sources: Mapping[str, Mapping[str, int]] | None = None,
) -> list[Hit]:
    """Hits ranked 1..k with ``stage1_rank``/``stage1_score`` set and the document filled in.

    ``sources`` (hybrid: :func:`source_ranks`) fills ``stage1_ranks``; a fused hit no retriever returned
    (not expected) gets an empty mapping.
    """
    return [
        Hit(id=i, rank=r, score=s, stage1_rank=r, stage1_score=s, document=docs[i],
            stage1_ranks=None if sources is None else dict(sources.get(i, {})))
        for r, (i, s) in enumerate(ranking, start=1)
    ]


def hybrid_depth(k: int, retriever: str, fusion: FusionConfig, n: int) -> int:
    """How many candidates each side fetches: ``fusion.candidates * k`` (at most ``n``) for hybrid, else k."""
    return min(k * fusion.candidates, n) if retriever == "hybrid" else k
