"""The derived files of a local index directory: Faiss, BM25 and the manifest, kept in step with SQLite.

``docs.sqlite`` is the source of truth and carries a write ``generation``. Every derived file records the
generation it was built at (``faiss_generation`` in ``manifest.json``, ``generation`` in
``bm25/state.json``); a file whose generation differs from the store's is rebuilt from the store instead of
being trusted. Files are written to a temporary name and swapped in with ``os.replace`` under an advisory
``flock`` (so two writer processes never interleave their swaps), and only when the store is still at the
generation being written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import IndexCorruptError
from rankfunnel.index.faiss import FaissIndex, IndexConfig, _fsync_dir
from rankfunnel.lexical import BM25Index
from rankfunnel.store import DocStore

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, single writer process assumed
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DOCS, VECTORS, BM25_DIR, MANIFEST, LOCK = "docs.sqlite", "vectors.faiss", "bm25", "manifest.json", ".lock"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file, fsync it, then ``os.replace`` it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class IndexFiles:
    """Loads, rebuilds and writes the Faiss index, the BM25 index and the manifest of one directory."""

    def __init__(
        self, path: Path, store: DocStore, embedder_name: str, dim: int, config: IndexConfig
    ) -> None:
        self.path = path
        self.store = store
        self.embedder_name = embedder_name
        self.dim = dim
        self.config = config

    def manifest(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.path / MANIFEST).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        with open(self.path / LOCK, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def cleanup(self) -> None:
        """Remove temporary files left by a writer that crashed."""
        for p in self.path.glob(".*.tmp-*"):
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    # -- Faiss -----------------------------------------------------------------------------------------
    def load_faiss(self, gen: int) -> FaissIndex:
        """The Faiss index at generation ``gen``.

        vectors.faiss when the manifest says it was written at ``gen`` and it holds every live key;
        otherwise the index is rebuilt from the vectors in docs.sqlite (and written back).
        """
        live = self.store.keys()
        if self.manifest().get("faiss_generation") == gen and (self.path / VECTORS).is_file():
            try:
                index = FaissIndex.load(self.path / VECTORS, self.dim, self.config)
                if np.isin(live, index.stored_keys()).all():
                    index.set_live(live)
                    return index
                log.warning("%s misses documents of docs.sqlite; rebuilding it", self.path / VECTORS)
            except IndexCorruptError as exc:
                log.warning("Rebuilding %s: %s", self.path / VECTORS, exc)
        log.info("Building the Faiss index of %s from docs.sqlite (generation %d)", self.path, gen)
        index = FaissIndex(self.dim, self.config)
        for keys, vectors in self.store.iter_vectors(self.dim):
            index.add(keys, vectors)
        self.save_faiss(index, gen)
        return index

    def save_faiss(self, index: FaissIndex, gen: int) -> None:
        """Write vectors.faiss, then the manifest that vouches for it (both atomic swaps)."""
        with self.lock():
            if self.store.generation != gen:  # another process committed after us; it writes the files
                return
            try:
                index.save(self.path / VECTORS)
                write_json_atomic(
                    self.path / MANIFEST,
                    {
                        "format_version": FORMAT_VERSION,
                        "embedder": {"name": self.embedder_name, "dim": self.dim},
                        "index": self.config.to_dict(),
                        "generation": gen,
                        "faiss_generation": gen,
                        "counts": {"documents": len(index)},
                        "files": {"documents": DOCS, "vectors": VECTORS, "bm25": BM25_DIR + "/"},
                        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                )
            except OSError as exc:  # e.g. a read-only directory: the store stays the source of truth
                log.warning(
                    "Could not write index files in %s (%s); they are rebuilt on open.", self.path, exc
                )

    # -- BM25 ------------------------------------------------------------------------------------------
    def load_bm25(self, gen: int) -> BM25Index:
        """bm25/ when it was built at ``gen``; otherwise rebuilt from docs.sqlite and saved."""
        folder = self.path / BM25_DIR
        if BM25Index.saved_generation(folder) == gen:
            try:
                return BM25Index.load(folder)
            except IndexCorruptError as exc:
                log.warning("Rebuilding %s: %s", folder, exc)
        n = self.store.count()
        index = BM25Index.build(self.store.iter_contents(), generation=gen, show_progress=n > 20_000)
        with self.lock():
            if self.store.generation == gen:
                try:
                    index.save(folder)
                except OSError as exc:
                    log.warning("Could not save the BM25 index in %s (%s).", folder, exc)
        return index
