r"""BM25 over the stored title + text, with bm25s.

The index is built over all documents of a :class:`rankfunnel.store.DocStore` in key order and saved in
``bm25/`` of the index directory together with ``keys.npy`` (row -> document key) and ``state.json`` (the
store generation it was built at). It is a cache: after an add or delete it is rebuilt on the next lexical
search, and a directory whose state does not match the store is rebuilt rather than trusted.

Tokenisation: lower-cased ``\w\w+`` tokens with bm25s's English stop words, no stemming (so that an index
reads the same everywhere, whether or not PyStemmer is installed). Scoring: Lucene BM25, ``k1=0.9``,
``b=0.4`` (the Anserini defaults used by the BEIR reference figures).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel._optional import require
from rankfunnel.errors import IndexCorruptError
from rankfunnel.progress import track

STATE_FILE = "state.json"
KEYS_FILE = "keys.npy"
FORMAT = 1


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks (the checksum that derived files of an index are verified with)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _bm25s() -> Any:
    return require("bm25s", "core")


_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's default token pattern
_STOPWORDS: frozenset[str] | None = None


def tokenize(texts: list[str], *, show_progress: bool = False) -> list[list[str]]:
    """The tokens BM25 indexes and queries with (lower-cased words, English stop words removed).

    Hand-written because it runs once per query: it gives exactly what ``bm25s.tokenize(texts,
    stopwords="en", return_ids=False)`` gives (same pattern, same stop-word list) without that function's
    per-call progress-bar object and per-text stop-word set, which cost about a millisecond per query.
    """
    global _STOPWORDS
    if _STOPWORDS is None:
        _STOPWORDS = frozenset(_bm25s().stopwords.STOPWORDS_EN)
    stop = _STOPWORDS
    items = track(texts, "BM25 tokens") if show_progress else texts
    return [[t for t in _TOKEN.findall(text.lower()) if t not in stop] for text in items]


class BM25Index:
    """A bm25s index whose rows map to document keys.

    Examples:
        >>> import numpy as np
        >>> bm = BM25Index.build([(np.array([5, 9]), ["red apples", "green pears"])])
        >>> [key for key, _ in bm.search("apples", 5)]
        [5]
    """

    def __init__(self, retriever: Any, keys: np.ndarray, generation: int, k1: float, b: float) -> None:
        self._retriever = retriever
        self.keys = np.asarray(keys, dtype=np.int64)
        self.generation = generation
        self.k1, self.b = k1, b
        if self.keys.size > 1 and not bool(np.all(np.diff(self.keys) > 0)):
            raise IndexCorruptError("BM25 keys are not strictly increasing; the index will be rebuilt.")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(
        cls,
        chunks: Iterable[tuple[np.ndarray, list[str]]],
        *,
        generation: int = 0,
        k1: float = 0.9,
        b: float = 0.4,
        show_progress: bool = False,
    ) -> BM25Index:
        """Index ``(keys, texts)`` chunks, tokenised one at a time (raw texts are never all in memory)."""
        bm25s = _bm25s()
        keys: list[np.ndarray] = []
        tokens: list[list[str]] = []
        for chunk_keys, texts in chunks:
            keys.append(np.asarray(chunk_keys, dtype=np.int64))
            tokens.extend(tokenize(texts, show_progress=show_progress))
        all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        if tokens:
            retriever.index(tokens, show_progress=show_progress)
        return cls(retriever if tokens else None, all_keys, generation, k1, b)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-``k`` ``(key, score)`` with a positive score, best first (ties: lower key first).

        Documents that share no term with the query are not returned, so there may be fewer than ``k``.
        """
        if self._retriever is None or k <= 0:
            return []
        q = [t for t in tokenize([query])[0] if t in self._retriever.vocab_dict]
        if not q:
            return []
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self.keys), dtype=np.float32)
            allowed = np.asarray(allowed, dtype=np.int64)
            rows = np.searchsorted(self.keys, allowed)  # keys are sorted: rows are found by bisection
            ok = rows < len(self.keys)
            ok[ok] = self.keys[rows[ok]] == allowed[ok]
            mask[rows[ok]] = 1.0
        scores = np.asarray(self._retriever.get_scores(q, weight_mask=mask), dtype=np.float32)
        positive = np.flatnonzero(scores > 0)
        if positive.size > k:
            part = np.argpartition(-scores[positive], k - 1)[:k]
            positive = positive[part]
        order = positive[np.lexsort((self.keys[positive], -scores[positive]))]
        return [(int(self.keys[i]), float(scores[i])) for i in order]

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write to a sibling temp folder, then swap it in.

        A crash leaves an old or absent folder, never a mixed one; a missing or stale folder is rebuilt.
        """
        directory = Path(directory)
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self._retriever is not None:
            self._retriever.save(str(tmp), show_progress=False)
        np.save(tmp / KEYS_FILE, self.keys)
        state = {
            "sha256": {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()},
            "format": FORMAT,
            "generation": self.generation,
            "k1": self.k1,
            "b": self.b,
            "empty": self._retriever is None,
        }
        (tmp / STATE_FILE).write_text(json.dumps(state))
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index:
        directory = Path(directory)
        try:
            state = json.loads((directory / STATE_FILE).read_text())
            if not isinstance(state, dict):
                raise ValueError("state.json is not a JSON object")
            for name, digest in dict(state.get("sha256") or {}).items():  # files written with their checksums
                if file_sha256(directory / name) != digest:
                    raise ValueError(f"{name} differs from the file that was saved (checksum)")
            keys = np.load(directory / KEYS_FILE)
            retriever = (
                None if state.get("empty") else _bm25s().BM25.load(str(directory), show_progress=False)
            )
            if not (isinstance(keys, np.ndarray) and keys.ndim == 1 and np.issubdtype(keys.dtype, np.integer)):
                raise ValueError(f"keys.npy holds {getattr(keys, 'dtype', type(keys))} of shape "
                                 f"{getattr(keys, 'shape', '?')}, not a list of integer keys")
            return cls(retriever, keys, int(state["generation"]), float(state["k1"]), float(state["b"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise IndexCorruptError(f"Cannot read the BM25 index in {directory} ({exc}).") from exc

    def check(self, live_keys: np.ndarray) -> None:
        """Raise :class:`IndexCorruptError` unless this index covers exactly ``live_keys`` with a matrix of that size.

        A saved index that parses but disagrees with the store (keys of another length or other documents, a
        score matrix or vocabulary of another shape) would otherwise fail inside a search.
        """
        if not np.array_equal(self.keys, np.sort(np.asarray(live_keys, dtype=np.int64))):
            raise IndexCorruptError(f"BM25 keys ({len(self.keys)}) differ from the stored documents ({len(live_keys)})")
        if self._retriever is None:
            if len(self.keys):
                raise IndexCorruptError("BM25 index is marked empty but lists documents")
            return
        scores = getattr(self._retriever, "scores", None) or {}
        vocab = getattr(self._retriever, "vocab_dict", None) or {}
        data, indices, indptr = (np.asarray(scores.get(k, [])) for k in ("data", "indices", "indptr"))
        n = int(scores.get("num_docs", -1))
        ok = (
            n == len(self.keys)
            and indptr.ndim == 1
            and len(vocab) <= indptr.size <= len(vocab) + 1  # bm25s gives its empty token no column
            and data.shape == indices.shape
            and (indptr.size == 0 or int(indptr[-1]) == data.size)
            and (indices.size == 0 or (int(indices.min()) >= 0 and int(indices.max()) < n))
            and all(isinstance(v, int | np.integer) and 0 <= int(v) < len(vocab) for v in vocab.values())
        )
        if not ok:
            raise IndexCorruptError(
                f"BM25 matrix ({n} documents, {indptr.size} pointers, {len(vocab)} terms) does not match its "
                f"{len(self.keys)} keys"
            )

    @staticmethod
    def saved_generation(directory: str | Path) -> int | None:
        """The store generation a saved index was built at, or None when absent or unreadable."""
        try:
            state = json.loads((Path(directory) / STATE_FILE).read_text())
            return int(state["generation"]) if isinstance(state, dict) and state.get("format") == FORMAT else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
