"""Collections: :func:`open_collection` picks a backend; :class:`LocalCollection` is the embedded default.

Every backend satisfies :class:`rankfunnel.protocols.Collection` (one contract suite checks them all):

- :class:`LocalCollection` (``rankfunnel.collection.local``): an index directory with SQLite documents, a Faiss
  index and a BM25 index; exact or HNSW search, metadata filters, hybrid fusion, atomic writes.
- ``MilvusCollection`` (``rankfunnel.collection.milvus``, extra ``milvus``): Milvus Lite files and Milvus servers.
- :class:`MemoryCollection` (``rankfunnel.collection.memory``): in memory, deterministic, no Faiss or SQLite;
  the fake for tests and examples.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from rankfunnel.collection.local import LocalCollection
from rankfunnel.collection.local_files import DOCS, LOCK, MANIFEST
from rankfunnel.collection.memory import MemoryCollection
from rankfunnel.errors import InvalidInputError, OptionalDependencyError
from rankfunnel.index.faiss import IndexConfig
from rankfunnel.protocols import Collection, Embedder

__all__ = ["LocalCollection", "MemoryCollection", "check_index_target", "open_collection"]


def _looks_like_milvus(target: str) -> bool:
    if target.startswith(("http://", "https://", "tcp://", "grpc://")):
        return True
    return target.endswith(".db") and not Path(target).is_dir()


def open_collection(
    path_or_uri: str | os.PathLike[str],
    *,
    backend: str = "auto",
    embedder: Embedder | None = None,
    create: bool = False,
    **opts: Any,
) -> Collection:
    """Open (or, with ``create=True``, open-or-create) a collection.

    Args:
        path_or_uri: An index directory (faiss) or a Milvus URI (``http(s)://...``, a Milvus Lite ``.db``).
        backend: ``auto`` (milvus for such URIs, else faiss), ``faiss`` or ``milvus``.
        embedder: The embedder; None uses the one recorded in the index (or all-MiniLM-L6-v2 when creating).
        create: Create the collection when it does not exist yet.
        **opts: For faiss: ``index_type``, ``hnsw_m``, ``ef_construction``, ``ef_search``, ``fusion``,
            ``device``.

    Examples:
        >>> col = open_collection("out/my-index", create=True)  # doctest: +SKIP
        >>> col = open_collection("http://localhost:19530", embedder=emb)  # doctest: +SKIP
    """
    target = os.fspath(path_or_uri)
    if backend not in ("auto", "faiss", "milvus"):
        raise InvalidInputError(f"backend={backend!r} is unknown; use 'auto', 'faiss' or 'milvus'.")
    if backend == "milvus" or (backend == "auto" and _looks_like_milvus(target)):
        try:
            from rankfunnel.collection.milvus import MilvusCollection
        except ImportError as exc:
            raise OptionalDependencyError(
                f"The Milvus backend is not available ({exc}). "
                "Install it with: pip install 'rankfunnel[milvus]'"
            ) from exc
        return MilvusCollection(target, embedder=embedder, create=create, **opts)
    path = Path(target)
    fusion = opts.pop("fusion", None)
    if (path / DOCS).exists() or (path / MANIFEST).exists() or not create:
        ef = opts.pop("ef_search", None)
        device = opts.pop("device", None)
        # the build settings of an existing index are in its manifest: ignore them, reject anything else
        opts = {k: v for k, v in opts.items() if k not in {f.name for f in fields(IndexConfig)}}
        if opts:
            raise InvalidInputError(f"Unknown options for a faiss collection: {sorted(opts)}.")
        return LocalCollection.open(path, embedder, fusion=fusion, device=device, ef_search=ef)
    check_index_target(path)  # before any model is loaded
    if embedder is None:
        from rankfunnel.embed import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(device=opts.pop("device", None))
    opts.pop("device", None)
    return LocalCollection.create(path, embedder, fusion=fusion, **opts)


def check_index_target(path: str | os.PathLike[str]) -> None:
    """Refuse a path that is neither an index directory nor a place for a new one (a file, another folder).

    Cheap, so callers run it before loading any model.

    Raises:
        InvalidInputError: naming the path and what to pass instead.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InvalidInputError(f"{p} is a file, not an index directory; pass a new or existing index directory.")
    is_index = (p / DOCS).exists() or (p / MANIFEST).exists()
    if p.is_dir() and not is_index and any(f.name != LOCK for f in p.iterdir()):
        raise InvalidInputError(
            f"{p} is a folder that holds other files but no index; pass an empty or new folder, or an index "
            "built by `rankfunnel index`."
        )
