"""The stage 1 used for mining: the project's own collection (dense + BM25) over the training corpus.

:func:`corpus_stage1` opens (or builds once, then reuses) a :class:`rankfunnel.collection.LocalCollection`
index directory for the corpus. When the storage package is not installed (a partial checkout), a small
in-memory stand-in with the same ``search`` contract is used instead: the embedder's vectors with exact
inner-product search and bm25s for BM25, i.e. the same components LocalCollection wraps.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError
from rankfunnel.types import Document, Hit

log = logging.getLogger(__name__)


def corpus_stage1(
    corpus: Mapping[str, Document],
    *,
    index_dir: str | Path | None,
    embedder: Any,
    show_progress: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[Any, str]:
    """A searchable stage 1 over ``corpus``; returns it and a one-line description for the model card.

    An existing, non-empty ``index_dir`` is opened as it is (its embedder is used); otherwise the corpus is
    indexed into ``index_dir`` (created). ``index_dir=None`` keeps the index in memory.
    """
    if index_dir is not None:
        from rankfunnel.collection import open_collection

        path = Path(index_dir)
        if path.is_dir() and any(path.iterdir()):
            coll = open_collection(str(path), embedder=embedder)
            if len(coll) == 0:
                raise InvalidInputError(f"Index {path} is empty; delete it or index the corpus into it.")
            return coll, f"rankfunnel LocalCollection at {path} ({len(coll)} docs)"
        coll = open_collection(str(path), embedder=embedder, create=True)
        coll.add(list(corpus.values()), show_progress=show_progress)
        return coll, f"rankfunnel LocalCollection built at {path} ({len(coll)} docs)"
    stage1 = MemoryStage1(corpus, embedder, show_progress=show_progress, cache_dir=cache_dir)
    return stage1, f"in-memory exact dense ({getattr(embedder, 'name', 'embedder')}) + bm25s"


class MemoryStage1:
    """Exact dense search and bm25s over an in-memory corpus, with the ``Collection.search`` contract.

    Args:
        corpus: Document id -> document.
        embedder: A :class:`rankfunnel.protocols.Embedder` (vectors L2-normalised).
        show_progress: Show the embedding progress bar.
        cache_dir: Folder where the document vectors are cached (keyed by embedder and corpus content).
    """

    def __init__(
        self,
        corpus: Mapping[str, Document],
        embedder: Any,
        *,
        show_progress: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        import bm25s

        if not corpus:
            raise InvalidInputError("The corpus is empty; nothing to search.")
        self._docs = list(corpus.values())
        texts = [d.content for d in self._docs]
        self._embedder = embedder
        cache = None
        if cache_dir is not None:
            digest = hashlib.sha1(str(getattr(embedder, "name", type(embedder).__name__)).encode())
            for d, t in zip(self._docs, texts, strict=True):
                digest.update(d.id.encode() + b"\0" + t.encode() + b"\0")
            cache = Path(cache_dir) / f"vectors-{digest.hexdigest()[:16]}.npy"
        if cache is not None and cache.is_file():
            self._vectors = np.load(cache)
        else:
            self._vectors = np.asarray(embedder.encode(texts, show_progress=show_progress), dtype=np.float32)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, self._vectors)
        self._bm25 = bm25s.BM25(k1=0.9, b=0.4)
        self._bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def __len__(self) -> int:
        return len(self._docs)

    def search(self, query: str, *, k: int = 100, retriever: str = "dense", filter: Any = None) -> list[Hit]:
        return self.search_many([query], k=k, retriever=retriever)[0]

    def search_many(
        self, queries: Sequence[str], *, k: int = 100, retriever: str = "dense", filter: Any = None
    ) -> list[list[Hit]]:
        k = min(k, len(self._docs))
        if retriever == "dense":
            scores = np.asarray(self._embedder.encode(list(queries)), dtype=np.float32) @ self._vectors.T
        elif retriever == "bm25":
            tokens = __import__("bm25s").tokenize(list(queries), stopwords="en", show_progress=False)
            docs, vals = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
            return [
                self._hits(list(map(int, d)), list(map(float, v))) for d, v in zip(docs, vals, strict=True)
            ]
        else:
            raise InvalidInputError(f"The in-memory stage 1 supports dense and bm25, not {retriever!r}.")
        out = []
        for row in scores:
            top = np.argsort(-row, kind="stable")[:k]
            out.append(self._hits([int(i) for i in top], [float(row[i]) for i in top]))
        return out

    def _hits(self, idx: list[int], scores: list[float]) -> list[Hit]:
        return [
            Hit(
                id=self._docs[i].id,
                rank=r + 1,
                score=s,
                stage1_rank=r + 1,
                stage1_score=s,
                document=self._docs[i],
            )
            for r, (i, s) in enumerate(zip(idx, scores, strict=True))
        ]


def default_embedder(model: str, device: str | None = None) -> Any:
    """The project's embedder for ``model`` (:class:`rankfunnel.embed.SentenceTransformerEmbedder`)."""
    from rankfunnel.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(model, device=device)
