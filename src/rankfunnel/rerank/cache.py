"""Score cache: an in-memory LRU with TTL (``cachetools.TTLCache``), optionally backed by SQLite.

Keys are ``(model, normalisation, query, sha256(document text))``, so editing a document's text can never
return a stale score, and two models or calibrations never share entries. Values are raw reranker scores.
Thread-safe (one lock). Part of the library: :class:`~rankfunnel.rerank.stage2.Stage2` owns it, so the
Pipeline, the CLI and the service share one cache implementation.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cachetools

CacheKey = tuple[str, str, str, str]


def cache_key(model: str, normalisation: str, query: str, doc: str) -> CacheKey:
    """The cache key of one (query, document) pair for a model and a normalisation.

    Examples:
        >>> k = cache_key("fake", "T=1,b=0", "q", "doc")
        >>> k[:3], len(k[3])
        (('fake', 'T=1,b=0', 'q'), 64)
    """
    return (model, normalisation, query, hashlib.sha256(doc.encode("utf-8", "surrogatepass")).hexdigest())


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class ScoreCache:
    """LRU + TTL cache of raw scores, with an optional persistent SQLite layer.

    Args:
        maxsize: Entries kept in memory (LRU eviction); ``0`` disables the cache.
        ttl_s: Seconds an entry stays valid (in memory and on disk).
        path: Optional SQLite file; entries survive restarts and are shared by processes on one machine.

    Examples:
        >>> c = ScoreCache(maxsize=10, ttl_s=60)
        >>> c.put_many([cache_key("m", "n", "q", "d")], [1.5])
        >>> c.get_many([cache_key("m", "n", "q", "d"), cache_key("m", "n", "q", "e")])
        [1.5, None]
    """

    def __init__(
        self, *, maxsize: int = 100_000, ttl_s: float = 3600.0, path: str | Path | None = None
    ) -> None:
        self.maxsize = maxsize
        self.ttl_s = float(ttl_s)
        self._mem: cachetools.TTLCache[Any, float] = cachetools.TTLCache(
            maxsize=max(maxsize, 1), ttl=self.ttl_s, timer=time.monotonic
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._db: sqlite3.Connection | None = None
        if path is not None and maxsize > 0:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (k TEXT PRIMARY KEY, score REAL, t REAL)")

    @property
    def enabled(self) -> bool:
        return self.maxsize > 0

    @staticmethod
    def _db_key(key: CacheKey) -> str:
        return "\x1f".join(key)

    def get_many(self, keys: Sequence[CacheKey]) -> list[float | None]:
        """Cached raw scores in key order; ``None`` for a miss. Counts hits and misses."""
        if not self.enabled:
            return [None] * len(keys)
        out: list[float | None] = []
        with self._lock:
            missing: list[int] = []
            for i, k in enumerate(keys):
                v = self._mem.get(k)
                out.append(v)
                if v is None:
                    missing.append(i)
            if missing and self._db is not None:
                cutoff = time.time() - self.ttl_s
                for i in missing:
                    row = self._db.execute(
                        "SELECT score, t FROM scores WHERE k = ?", (self._db_key(keys[i]),)
                    ).fetchone()
                    if row is not None and row[1] >= cutoff:
                        out[i] = float(row[0])
                        self._mem[keys[i]] = float(row[0])
            n_hit = sum(v is not None for v in out)
            self.hits += n_hit
            self.misses += len(keys) - n_hit
        return out

    def put_many(self, keys: Sequence[CacheKey], scores: Sequence[float]) -> None:
        """Store raw scores (in memory, and on disk when a path was given)."""
        if not self.enabled:
            return
        with self._lock:
            for k, s in zip(keys, scores, strict=True):
                self._mem[k] = float(s)
            if self._db is not None:
                now = time.time()
                with self._db:  # one transaction (one fsync) per call, not one per row
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        "INSERT OR REPLACE INTO scores (k, score, t) VALUES (?, ?, ?)",
                        [(self._db_key(k), float(s), now) for k, s in zip(keys, scores, strict=True)],
                    )

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self.hits, misses=self.misses, size=len(self._mem))

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()
            if self._db is not None:
                self._db.execute("DELETE FROM scores")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
