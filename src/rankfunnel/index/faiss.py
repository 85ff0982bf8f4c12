"""Faiss vector index over integer document keys: exact inner product by default, HNSW for large corpora.

Vectors are unit-norm, so inner product is cosine similarity. Both kinds wrap the index in
``IndexIDMap2`` so that results come back as the document keys of :class:`rankfunnel.store.DocStore`.

Filtered search (metadata equality, resolved to allowed keys in SQLite):

- ``flat``: exact search with ``SearchParameters(sel=IDSelectorBatch(allowed))``.
- ``hnsw``: when at most ``exact_filter_max`` documents match, their vectors are read back from the index
  storage and scored exactly (perfect recall, and cheaper than walking the graph for a small subset);
  otherwise the graph is searched with the selector and an ``efSearch`` raised by ``1 / selectivity``
  (capped at ``ntotal``) so that recall holds for selective filters. The recall tests in
  ``tests/storage/test_storage_hnsw.py`` check both paths against exact search.

HNSW cannot remove vectors, so deleted or replaced keys become tombstones excluded with an
``IDSelectorNot``; once they pass ``compact_ratio`` of the index, the graph is rebuilt from the live vectors.

``auto`` (the default) is exact search until the index reaches ``auto_hnsw_min`` vectors (100,000), then the
index is rebuilt once as HNSW from its own stored vectors, inside the write that crosses the threshold (so
the switch is committed atomically with that write). The threshold comes from ``make bench-scale``: below
~100k vectors the exact scan reads < 150 MB per query and needs no build, above it HNSW (M=32) keeps
recall@10 >= 0.99 at sub-millisecond latency (docs/scaling.md). An auto index never goes back to flat.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel._optional import require
from rankfunnel.errors import IndexCorruptError, InvalidInputError

INDEX_TYPES = ("auto", "flat", "hnsw")
AUTO_HNSW_MIN = 100_000
PROGRESS_MIN = 50_000  # HNSW additions of at least this many vectors get a progress bar


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexConfig:
    """Settings of the vector index, recorded in the manifest.

    Args:
        index_type: ``auto`` (default: ``flat`` until ``auto_hnsw_min`` vectors, then ``hnsw``), ``flat``
            (exact) or ``hnsw`` (approximate, for large corpora).
        hnsw_m: Graph degree of HNSW.
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW query-time beam width; the search uses ``max(ef_search, k)``.
        exact_filter_max: HNSW filtered searches matching at most this many documents are scored exactly.
        compact_ratio: HNSW tombstone fraction that triggers a rebuild of the graph.
        auto_hnsw_min: ``auto`` only: vector count at which the exact index becomes HNSW.
    """

    index_type: str = "auto"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 256
    exact_filter_max: int = 20_000
    compact_ratio: float = 0.2
    auto_hnsw_min: int = AUTO_HNSW_MIN

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise InvalidInputError(f"index_type={self.index_type!r} is unknown; use 'auto', 'flat' or 'hnsw'.")
        for name in ("hnsw_m", "ef_construction", "ef_search", "auto_hnsw_min"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not 0 < self.compact_ratio <= 1:
            raise InvalidInputError(f"compact_ratio must be in (0, 1], got {self.compact_ratio}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "index_type": self.index_type,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "exact_filter_max": self.exact_filter_max,
            "compact_ratio": self.compact_ratio,
            "auto_hnsw_min": self.auto_hnsw_min,
        }


def _faiss() -> Any:
    return require("faiss", "core", "faiss-cpu")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FaissIndex:
    """Keys -> unit vectors, searched by inner product.

    Examples:
        >>> import numpy as np
        >>> idx = FaissIndex(4)
        >>> idx.add(np.array([10, 11]), np.eye(4, dtype="float32")[:2])
        >>> idx.search(np.eye(4, dtype="float32")[:1], 1)[0]
        [(10, 1.0)]
    """

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        self.dim = int(dim)
        self.config = config or IndexConfig()
        # the structure in use: ``auto`` starts exact and becomes HNSW at ``auto_hnsw_min`` vectors
        self.kind = "hnsw" if self.config.index_type == "hnsw" else "flat"
        self._index = self._empty()
        self._dead: set[int] = set()

    def _empty(self) -> Any:
        faiss = _faiss()
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.config.ef_construction
            inner.hnsw.efSearch = self.config.ef_search
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    # -- size ------------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Vectors stored, tombstones included."""
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal - len(self._dead)

    def stored_keys(self) -> np.ndarray:
        return _faiss().vector_to_array(self._index.id_map).astype(np.int64)

    def set_live(self, live_keys: np.ndarray) -> None:
        """Mark every stored key not in ``live_keys`` as a tombstone (after loading from disk)."""
        stored = self.stored_keys()
        dead = np.setdiff1d(stored, live_keys, assume_unique=False)
        if dead.size and self.kind == "flat":
            self._index.remove_ids(_faiss().IDSelectorBatch(dead))
            dead = dead[:0]
        self._dead = {int(k) for k in dead}

    # -- writes ----------------------------------------------------------------------------------------
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInputError(f"Vectors have shape {vectors.shape}; this index needs (n, {self.dim}).")
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if (
            self.kind == "flat"
            and self.config.index_type == "auto"
            and self.ntotal + len(keys) >= self.config.auto_hnsw_min
        ):
            self._become_hnsw()
        if len(keys) < PROGRESS_MIN or self.kind == "flat":
            if len(keys):
                self._index.add_with_ids(vectors, keys)
            return
        from rankfunnel.progress import track  # building a large HNSW graph takes minutes: show it

        step = 20_000
        for start in track(range(0, len(keys), step), "HNSW graph (chunks)"):
            self._index.add_with_ids(vectors[start:start + step], keys[start:start + step])

    def _become_hnsw(self) -> None:
        """``auto``: rebuild the exact index as HNSW from its stored vectors."""
        self.kind = "hnsw"
        self.compact()  # the rebuild from live vectors that tombstone compaction already does

    def remove(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if self.kind == "flat":
            self._index.remove_ids(_faiss().IDSelectorBatch(keys))
            return
        self._dead.update(int(k) for k in keys)
        if len(self._dead) > self.config.compact_ratio * max(self.ntotal, 1):
            self.compact()

    def compact(self) -> None:
        """Rebuild the HNSW graph from live vectors, dropping tombstones."""
        stored = self.stored_keys()
        live = np.array([k for k in stored if int(k) not in self._dead], dtype=np.int64)
        vectors = self.reconstruct(live)
        self._index = self._empty()
        self._dead = set()
        self.add(live, vectors)

    def reconstruct(self, keys: np.ndarray) -> np.ndarray:
        if not len(keys):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(
            self._index.reconstruct_batch(np.ascontiguousarray(keys, dtype=np.int64)), dtype=np.float32
        )

    # -- search ----------------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[list[tuple[int, float]]]:
        """Top-``k`` ``(key, score)`` per query, best first; fewer when fewer documents are eligible.

        Args:
            queries: ``(n, dim)`` float32 unit vectors.
            k: Results per query (clamped to the number of eligible documents).
            allowed: Only these keys may be returned (a metadata filter); None allows all.
        """
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        nq = queries.shape[0]
        eligible = len(self) if allowed is None else len(allowed)
        k = min(int(k), eligible)
        if nq == 0 or k <= 0:
            return [[] for _ in range(nq)]
        if (
            allowed is not None
            and self.kind == "hnsw"
            and len(allowed) <= self.config.exact_filter_max
        ):
            return self._exact_subset(queries, k, allowed)
        params: Any = None
        sel: Any = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        elif self._dead:
            batch = faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64))
            sel = faiss.IDSelectorNot(batch)  # faiss's Python wrapper keeps a reference to ``batch``
        if self.kind == "hnsw":
            ef = max(self.config.ef_search, k)
            if sel is not None:  # a filter or tombstones: widen the beam by 1 / selectivity, up to ntotal
                ef = min(max(self.ntotal, ef), math.ceil(ef * self.ntotal / max(eligible, 1)))
            params = (
                faiss.SearchParametersHNSW(sel=sel, efSearch=int(ef))
                if sel is not None
                else faiss.SearchParametersHNSW(efSearch=int(ef))
            )
        elif sel is not None:
            params = faiss.SearchParameters(sel=sel)
        scores, labels = self._index.search(queries, k, params=params)
        return [
            [(int(lab), float(s)) for lab, s in zip(lab_row, s_row, strict=True) if lab >= 0]
            for lab_row, s_row in zip(labels, scores, strict=True)
        ]

    def _exact_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> list[list[tuple[int, float]]]:
        keys = np.ascontiguousarray(allowed, dtype=np.int64)
        scores = queries @ self.reconstruct(keys).T
        out = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.lexsort((keys[top], -row[top]))]
            out.append([(int(keys[i]), float(row[i])) for i in top])
        return out

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file, fsync, then ``os.replace`` over ``path``."""
        faiss = _faiss()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: str | Path, dim: int, config: IndexConfig) -> FaissIndex:
        faiss = _faiss()
        try:
            raw = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"Cannot read Faiss index {path} ({str(exc).splitlines()[0]}).") from exc
        if raw.d != dim:
            raise IndexCorruptError(f"Faiss index {path} has dimension {raw.d}, the store says {dim}.")
        if not isinstance(raw, faiss.IndexIDMap2):
            raise IndexCorruptError(f"Faiss index {path} is a {type(raw).__name__}, not an IndexIDMap2.")
        self = cls(dim, config)
        self._index = raw
        inner = faiss.downcast_index(raw.index)
        self.kind = "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"
        if self.kind == "hnsw" and config.index_type == "flat":
            raise IndexCorruptError(f"Faiss index {path} is HNSW, the manifest says 'flat'.")
        if self.kind == "hnsw":
            inner.hnsw.efSearch = config.ef_search
        return self
