"""The derived files of a local index directory: Faiss, BM25 and the manifest, kept in step with SQLite.

``docs.sqlite`` is the source of truth and carries a write ``generation``. Every derived file records the
generation it was built at (``faiss_generation`` in ``manifest.json``, ``generation`` in
``bm25/state.json``); a file whose generation differs from the store's is rebuilt from the store instead of
being trusted. A file that parses but disagrees with the store (another dimension, missing / extra /
duplicate keys, vectors that differ from the stored ones, a BM25 matrix of another size, a manifest naming
another embedder) is rebuilt too: every check runs when the file is loaded, so a search never meets it.

Files are written to a temporary name and swapped in with ``os.replace`` while holding the directory's writer
lock (``filelock`` on ``.lock``: two writer processes never interleave their swaps), and only when the store is
still at the generation being written. Opening an index removes temporary files left by crashed writers
under the same lock, so a live writer's files (written only while it holds the lock) are never touched.
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
from filelock import FileLock

from rankfunnel.errors import IndexCorruptError
from rankfunnel.index.faiss import FaissIndex, IndexConfig, _fsync_dir
from rankfunnel.lexical import BM25Index, file_sha256
from rankfunnel.store import DocStore

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
        self._lock = FileLock(str(path / LOCK))

    def manifest(self) -> dict[str, Any]:
        """manifest.json when it is a JSON object, else ``{}`` (a manifest that vouches for nothing)."""
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The directory's writer lock (``filelock``: flock on POSIX, msvcrt on Windows; reentrant)."""
        with self._lock:
            yield

    def cleanup(self) -> None:
        """Remove temporary files left by writers that crashed.

        Taken under the writer lock: a live writer creates and swaps its temporary files only while it holds
        that lock, so whatever is left when we hold it belongs to no live process.
        """
        with self.lock():
            for pattern in (".*.tmp-*", ".*.old-*"):
                for p in self.path.glob(pattern):
                    with contextlib.suppress(OSError):
                        shutil.rmtree(p) if p.is_dir() else p.unlink()

    # -- Faiss -----------------------------------------------------------------------------------------
    def load_faiss(self, gen: int) -> FaissIndex:
        """The Faiss index at generation ``gen``.

        vectors.faiss when the manifest says it was written at ``gen`` and it holds every live key;
        otherwise the index is rebuilt from the vectors in docs.sqlite (and written back).
        """
        live = self.store.keys()
        manifest = self.manifest()
        vouched = manifest.get("faiss_generation") == gen and manifest.get("embedder") == {
            "name": self.embedder_name,
            "dim": self.dim,
        }
        if vouched and (self.path / VECTORS).is_file():
            try:
                digest = manifest.get("faiss_sha256")
                if digest is not None and file_sha256(self.path / VECTORS) != digest:
                    raise IndexCorruptError("it differs from the file that was written (checksum)")
                index = FaissIndex.load(self.path / VECTORS, self.dim, self.config)
                self._check_faiss(index, live)
                index.set_live(live)
                return index
            except Exception as exc:  # noqa: BLE001 - any unreadable or disagreeing file is rebuilt from the store
                log.warning("Rebuilding %s: %s", self.path / VECTORS, exc)
        log.info("Building the Faiss index of %s from docs.sqlite (generation %d)", self.path, gen)
        index = FaissIndex(self.dim, self.config)
        for keys, vectors in self.store.iter_vectors(self.dim):
            index.add(keys, vectors)
        self.save_faiss(index, gen)
        return index

    def _check_faiss(self, index: FaissIndex, live: np.ndarray) -> None:
        """Raise :class:`IndexCorruptError` unless ``index`` holds exactly the store's vectors under its keys."""
        stored = index.stored_keys()
        if stored.size != index.ntotal or np.unique(stored).size != stored.size:
            raise IndexCorruptError(f"its {index.ntotal} vectors have {np.unique(stored).size} distinct keys")
        if not np.isin(live, stored).all():
            raise IndexCorruptError("it misses documents of docs.sqlite")
        for keys, vectors in self.store.iter_vectors(self.dim, batch=16):  # a sample: the first stored rows
            if not np.allclose(index.reconstruct(keys), vectors, atol=1e-5):
                raise IndexCorruptError("its vectors differ from those in docs.sqlite")
            break

    def save_faiss(self, index: FaissIndex, gen: int) -> None:
        """Write vectors.faiss, then the manifest that vouches for it (both atomic swaps)."""
        with self.lock():
            if self.store.generation != gen:  # another process committed after us; it writes the files
                return
            try:
                index.save(self.path / VECTORS)
                digest = file_sha256(self.path / VECTORS)  # under the lock: nobody else writes it now
                write_json_atomic(
                    self.path / MANIFEST,
                    {
                        "format_version": FORMAT_VERSION,
                        "embedder": {"name": self.embedder_name, "dim": self.dim},
                        "index": self.config.to_dict(),
                        "generation": gen,
                        "faiss_generation": gen,
                        "faiss_sha256": digest,
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
                loaded = BM25Index.load(folder)
                loaded.check(self.store.keys())
                return loaded
            except Exception as exc:  # noqa: BLE001 - any unreadable or disagreeing file is rebuilt from the store
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
