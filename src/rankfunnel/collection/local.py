"""LocalCollection: an index directory holding SQLite documents, a Faiss index and a BM25 index.

Layout of the directory::

    docs.sqlite     documents, keys, vectors, settings, write generation (the source of truth)
    vectors.faiss   Faiss index over the vectors (a cache, rebuilt from docs.sqlite when stale)
    bm25/           bm25s index over title + text (a cache, rebuilt on the next lexical search when stale)
    manifest.json   embedder name and dimension, index settings, format version, counts, generations

A write embeds first, then commits rows and vectors in one SQLite transaction that also bumps the
``generation``: that commit is the only point where a change becomes durable. Faiss and the manifest are then
written to temporary files and swapped in with ``os.replace``. A crash before the commit leaves the previous
state; a crash after it leaves Faiss or BM25 files older than the store, which :meth:`LocalCollection.open`
detects from the generations and rebuilds from ``docs.sqlite``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

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
from rankfunnel.collection.local_files import DOCS, FORMAT_VERSION, LOCK, MANIFEST, IndexFiles
from rankfunnel.embed import check_same_embedder, embedder_from_name
from rankfunnel.errors import (
    IndexCorruptError,
    IndexMismatchError,
    InvalidInputError,
)
from rankfunnel.fusion import FusionConfig
from rankfunnel.index.faiss import IndexConfig
from rankfunnel.lexical import BM25Index
from rankfunnel.protocols import Embedder
from rankfunnel.store import DocStore
from rankfunnel.types import Document, Hit
from rankfunnel.validate import check_document

log = logging.getLogger(__name__)


class LocalCollection(CollectionMixin):
    """Documents in an index directory, searched densely (Faiss), lexically (BM25) or both (fused).

    Build one with :meth:`create` or :meth:`open` (or :func:`open_collection`), not the constructor.

    Search semantics: ``k`` larger than the number of (matching) documents returns them all, without error;
    BM25 returns only documents sharing a term with the query; ``retriever="hybrid"`` fetches
    ``fusion.candidates * k`` from each side and fuses them with :class:`rankfunnel.fusion.FusionConfig`.

    Examples:
        >>> from rankfunnel.embed import HashingEmbedder
        >>> col = LocalCollection.create("/tmp/rf-doc-example", HashingEmbedder(32), exist_ok=True)
        >>> col.add([Document(id="a", text="red apples")], upsert=True)
        1
        >>> col.search("apples", k=1)[0].id
        'a'
    """

    def __init__(
        self,
        path: Path,
        store: DocStore,
        embedder: Embedder | None,
        name: str,
        dim: int,
        config: IndexConfig,
        fusion: FusionConfig | None = None,
        device: str | None = None,
    ) -> None:
        self.path = path
        self._store = store
        self._embedder = embedder
        self._embedder_name, self.dim = name, dim
        self._device = device
        self.config = config
        self.fusion = fusion or FusionConfig()
        self._lock = threading.RLock()
        self._deferred = 0
        self._generation = store.generation
        self._files = IndexFiles(path, store, name, dim, config)
        self._faiss = self._files.load_faiss(self._generation)
        self._bm25: BM25Index | None = None

    # -- construction ----------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        embedder: Embedder | None = None,
        *,
        index_type: str = "auto",
        exist_ok: bool = False,
        fusion: FusionConfig | None = None,
        **index_opts: Any,
    ) -> LocalCollection:
        """Create an empty index directory (it may exist but must be empty).

        Args:
            path: The directory.
            embedder: Default: ``SentenceTransformerEmbedder()`` (all-MiniLM-L6-v2).
            index_type: ``auto`` (default: exact until 100,000 vectors, then HNSW), ``flat`` (always exact)
                or ``hnsw``; ``index_opts`` go to :class:`IndexConfig`.
            exist_ok: Open the directory instead of failing when it already holds an index.
            fusion: Default fusion for ``retriever="hybrid"``.

        Examples:
            >>> from rankfunnel.embed import HashingEmbedder
            >>> col = LocalCollection.create("/tmp/rf-hnsw-example", HashingEmbedder(16), index_type="hnsw",
            ...                              exist_ok=True, ef_search=128)
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InvalidInputError(f"{path} is a file, not a directory; choose a new directory.")
        config = IndexConfig(index_type=index_type, **index_opts)
        path.mkdir(parents=True, exist_ok=True)
        # check-and-create under the directory's writer lock: racing creators see a complete index or none
        with FileLock(str(path / LOCK)):
            exists = (path / DOCS).exists() or (path / MANIFEST).exists()
            if not exists:
                if any(p.name != LOCK for p in path.iterdir()):
                    raise InvalidInputError(f"{path} exists and is not an empty directory; choose a new directory.")
                if embedder is None:
                    from rankfunnel.embed import SentenceTransformerEmbedder

                    embedder = SentenceTransformerEmbedder()
                store = DocStore(path / DOCS)
                with store.transaction() as conn:
                    for name, value in (
                        ("format_version", FORMAT_VERSION),
                        ("embedder", embedder.name),
                        ("dim", embedder.dim),
                        ("index", json.dumps(config.to_dict())),
                        ("generation", 0),
                        ("next_key", 0),
                    ):
                        store.set_meta(conn, name, value)
        if exists:
            if exist_ok:
                return cls.open(path, embedder, fusion=fusion)
            raise InvalidInputError(
                f"{path} already holds an index; open it with LocalCollection.open(...) "
                "(open_collection(..., create=False)) or choose an empty directory."
            )
        assert embedder is not None
        col = cls(path, store, embedder, embedder.name, int(embedder.dim), config, fusion)
        col._persist(force=True)
        return col

    @classmethod
    def open(
        cls,
        path: str | Path,
        embedder: Embedder | None = None,
        *,
        fusion: FusionConfig | None = None,
        device: str | None = None,
        ef_search: int | None = None,
    ) -> LocalCollection:
        """Open an index directory.

        Args:
            path: The directory.
            embedder: Must match the one the index was built with (name and dimension); None loads that one
                (lazily, on the first dense search or add).
            fusion: Default fusion for ``retriever="hybrid"``.
            device: Device for the embedder loaded from the manifest.
            ef_search: Override HNSW ``efSearch``.

        Raises:
            IndexMismatchError: ``embedder`` differs from the index's; the message names the right one.

        Examples:
            >>> col = LocalCollection.open("/tmp/rf-doc-example")  # doctest: +SKIP
        """
        path = Path(path)
        if not (path / DOCS).is_file():
            if (path / MANIFEST).is_file():
                raise IndexCorruptError(
                    f"{path / DOCS} is missing: the index cannot be recovered; rebuild it."
                )
            raise InvalidInputError(
                f"{path} is not an index directory. Create one with create=True or "
                f"`rankfunnel index SOURCE --index-dir {path}`."
            )
        store = DocStore(path / DOCS)
        meta = {n: store.get_meta(n) for n in ("format_version", "embedder", "dim", "index")}
        if any(v is None for v in meta.values()):  # perhaps being created right now: wait for its creator
            with FileLock(str(path / LOCK)):
                meta = {n: store.get_meta(n) for n in meta}
        if any(v is None for v in meta.values()):
            raise IndexCorruptError(
                f"{path} holds an index whose creation was interrupted; delete the directory "
                "and create it again."
            )
        if store.int_meta("format_version", minimum=1) > FORMAT_VERSION:
            raise IndexCorruptError(
                f"{path} was written by a newer rankfunnel (format {meta['format_version']}); "
                "upgrade rankfunnel to open it."
            )
        name, dim = str(meta["embedder"]), store.int_meta("dim", minimum=1)
        store.int_meta("generation")
        store.int_meta("next_key")
        next(store.iter_vectors(dim, batch=16), None)  # the stored vectors have that dimension
        if embedder is not None and (embedder.name != name or int(embedder.dim) != dim):
            raise IndexMismatchError(
                f"{path} was built with embedder {name!r} (dimension {dim}), but {embedder.name!r} "
                f"(dimension {embedder.dim}) was given. Use the embedder {name!r} (or pass embedder=None "
                "to load it from the index), or build a new index directory with the new embedder."
            )
        try:
            opts = json.loads(meta["index"] or "{}")
            config = IndexConfig(**{**opts, **({} if ef_search is None else {"ef_search": ef_search})})
        except (ValueError, TypeError) as exc:
            if ef_search is not None and isinstance(exc, InvalidInputError):
                raise
            raise IndexCorruptError(
                f"{path / DOCS} stores index settings that cannot be read ({exc}): the index is damaged. "
                "Rebuild it into a new directory with `rankfunnel index SOURCE --index-dir NEW`."
            ) from None
        col = cls(path, store, embedder, name, dim, config, fusion, device)
        col._files.cleanup()
        return col

    def close(self) -> None:
        self._store.close()

    def __repr__(self) -> str:
        return f"LocalCollection({str(self.path)!r}, embedder={self._embedder_name!r}, docs={len(self)})"

    # -- derived files ---------------------------------------------------------------------------------
    def _persist(self, force: bool = False) -> None:
        if force or not self._deferred:
            self._files.save_faiss(self._faiss, self._generation)

    @contextlib.contextmanager
    def deferred_writes(self) -> Iterator[LocalCollection]:
        """Batch many ``add`` calls: Faiss and the manifest are written once, on exit.

        Each ``add`` still commits to SQLite, so a crash inside the block loses nothing committed (the
        Faiss index is rebuilt on open).

        Examples:
            >>> with col.deferred_writes():  # doctest: +SKIP
            ...     for chunk in chunks:
            ...         col.add(chunk)
        """
        with self._lock:
            self._deferred += 1
        try:
            yield self
        finally:
            with self._lock:
                self._deferred -= 1
                if not self._deferred:
                    self._persist()

    def _sync(self) -> None:
        """Pick up commits made by another process since this one last looked."""
        if self._store.generation != self._generation:
            self._generation = self._store.generation
            self._faiss = self._files.load_faiss(self._generation)
            self._bm25 = None

    def _lexical(self) -> BM25Index:
        if self._bm25 is None or self._bm25.generation != self._generation:
            self._bm25 = self._files.load_bm25(self._generation)
        return self._bm25

    # -- embedder --------------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = embedder_from_name(self._embedder_name, self.dim, device=self._device)
            if int(self._embedder.dim) != self.dim:
                raise IndexMismatchError(
                    f"Embedder {self._embedder_name!r} now gives dimension "
                    f"{self._embedder.dim}, the index holds {self.dim}; rebuild the index."
                )
        return self._embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        """Swap the encoder for one giving the same vectors (e.g. a ``PooledEmbedder`` around it)."""
        check_same_embedder(embedder, self._embedder_name, self.dim)
        self._embedder = embedder

    def _encode(self, texts: list[str], show_progress: bool | None = None) -> np.ndarray:
        vectors = np.asarray(self.embedder.encode(texts, show_progress=show_progress), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise IndexMismatchError(
                f"The embedder returned shape {vectors.shape}, expected ({len(texts)}, "
                f"{self.dim}); open the index with the embedder it was built with."
            )
        return vectors

    # -- writes ----------------------------------------------------------------------------------------
    def add(
        self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
    ) -> int:
        """Embed and store ``docs`` in one atomic commit; returns how many were written.

        Raises:
            InvalidInputError: duplicate ids within ``docs``, or ids already stored while ``upsert`` is False.

        Examples:
            >>> col.add([Document(id="d1", text="hello")])  # doctest: +SKIP
            1
        """
        items = [check_document(d, i) for i, d in enumerate(docs)]
        if not items:
            return 0
        ids = check_unique_ids(items)
        if not upsert:
            clash = self._store.existing(ids)
            if clash:
                raise already_stored(clash)
        vectors = self._encode([d.content for d in items], show_progress)
        with self._lock:
            self._sync()
            with self._store.transaction() as conn:
                reload = self._store.generation != self._generation
                old = self._store.delete_ids(conn, ids) if upsert else np.zeros(0, dtype=np.int64)
                keys = self._store.allocate_keys(conn, len(items))
                self._store.insert(conn, items, keys, vectors)
                gen = self._store.bump_generation(conn)
            self._after_commit(gen, reload, old, keys, vectors)
        return len(items)

    def _delete(self, ids: list[str]) -> int:
        with self._lock:
            self._sync()
            missing = sorted(set(ids) - self._store.existing(ids))
            if missing:
                raise not_found(missing, self._where, deleting=True)
            with self._store.transaction() as conn:
                reload = self._store.generation != self._generation
                old = self._store.delete_ids(conn, ids)
                gen = self._store.bump_generation(conn)
            empty = np.zeros(0, dtype=np.int64)
            self._after_commit(gen, reload, old, empty, np.zeros((0, self.dim), dtype=np.float32))
        return len(ids)

    def _after_commit(
        self, gen: int, reload: bool, removed: np.ndarray, keys: np.ndarray, vectors: np.ndarray
    ) -> None:
        """Bring the Faiss cache up to the committed generation and write it (unless deferred)."""
        self._generation = gen
        self._bm25 = None
        if reload:  # another process committed in between: our in-memory index missed its changes
            self._faiss = self._files.load_faiss(self._generation)
            return
        try:
            self._faiss.remove(removed)
            self._faiss.add(keys, vectors)
        except Exception:  # noqa: BLE001 - the store is committed; rebuild the cache from it
            log.exception("Updating the Faiss index failed; rebuilding it from docs.sqlite")
            self._faiss = self._files.load_faiss(self._generation)
            return
        self._persist()

    # -- reads -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._store.count()

    def ids(self) -> list[str]:
        """All document ids, in insertion order."""
        return self._store.ids()

    def _documents(self, ids: list[str]) -> dict[str, Document]:
        return self._store.docs_by_ids(ids)

    def info(self) -> dict[str, Any]:
        """Path, backend, embedder, index settings, fusion defaults, counts and generation."""
        with self._lock:
            self._sync()
            return {
                "backend": "faiss",
                "path": str(self.path),
                "format_version": FORMAT_VERSION,
                "embedder": {"name": self._embedder_name, "dim": self.dim},
                "index": {**self.config.to_dict(), "active": self._faiss.kind},
                "fusion": self.fusion.to_dict(),
                "documents": len(self),
                "vectors": len(self._faiss),
                "generation": self._generation,
            }

    def _search_many(
        self, qs: list[str], k: int, retriever: str, filter: Mapping[str, Any] | None, cfg: FusionConfig
    ) -> list[list[Hit]]:
        empty = InvalidInputError(
            f"The collection at {self.path} is empty: add documents "
            "(collection.add(...) or `rankfunnel index`) before searching."
        )
        if self._store.count() == 0:
            raise empty
        qvecs = self._encode(qs) if retriever != "bm25" else None
        with self._lock:
            self._sync()
            n = self._store.count()
            if n == 0:
                raise empty
            allowed = self._store.keys_matching(filter) if filter else None
            if allowed is not None and allowed.size == 0:
                return [[] for _ in qs]
            depth = hybrid_depth(k, retriever, cfg, n)
            dense = self._faiss.search(qvecs, depth, allowed) if qvecs is not None else None
            lexical = (
                [self._lexical().search(q, depth, allowed) for q in qs] if retriever != "dense" else None
            )
            # candidates are named by id (cheap), fused, and only the final top k are read in full
            wanted = {key for runs in (dense or [], lexical or []) for run in runs for key, _ in run}
            id_of = self._store.ids_by_keys(sorted(wanted))
            key_of = {doc_id: key for key, doc_id in id_of.items()}
            rankings = []
            sources: list[dict[str, dict[str, int]] | None] = []
            for i in range(len(qs)):
                # a key the store no longer holds (never expected: caches are rebuilt when stale) is skipped
                d = ranked((id_of[key], s) for key, s in (dense[i] if dense else []) if key in id_of)
                b = ranked((id_of[key], s) for key, s in (lexical[i] if lexical else []) if key in id_of)
                rankings.append(rank_runs(d, b, retriever, cfg, k))
                sources.append(source_ranks(d, b) if retriever == "hybrid" else None)
            docs = self._store.docs_by_keys(sorted({key_of[d] for r in rankings for d, _ in r}))
        by_id = {doc_id: docs[key] for doc_id, key in key_of.items() if key in docs}
        return [to_hits(r, by_id, src) for r, src in zip(rankings, sources, strict=True)]
