"""SQLite document store: the source of truth of an index directory.

One table holds each document (``id`` TEXT primary key, title, text, metadata JSON), its integer ``key``
(the id Faiss and BM25 use; keys are never reused, so a stale vector can never alias a new document) and its
float32 vector. A ``meta`` table holds the embedder, the index settings, the next key and the write
``generation``, bumped in the same transaction as every change. Faiss and BM25 files are caches that record
the generation they were built at; when it differs from the store's, they are rebuilt from here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import IndexCorruptError, InvalidInputError
from rankfunnel.types import Document
from rankfunnel.validate import check_filter, check_metadata

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY,
    key INTEGER NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_key_id ON docs(key, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CHUNK = 900  # stays below SQLite's default limit of host parameters per statement


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DocStore:
    """Documents, keys and vectors in one SQLite file (WAL mode, one transaction per write).

    Examples:
        >>> import tempfile, pathlib
        >>> store = DocStore(pathlib.Path(tempfile.mkdtemp()) / "docs.sqlite")
        >>> store.count()
        0
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache: hits are read often
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(
                f"{self.path} is not a readable SQLite database ({exc}). Restore it from a backup or "
                "rebuild the index into a new directory."
            ) from exc
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- transactions and meta -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back on any exception, so a write is all or nothing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get_meta(self, name: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else default

    def set_meta(self, conn: sqlite3.Connection, name: str, value: Any) -> None:
        conn.execute(
            "INSERT INTO meta(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value = "
            "excluded.value",
            (name, str(value)),
        )

    def int_meta(self, name: str, default: int = 0, *, minimum: int = 0) -> int:
        """An integer setting; :class:`IndexCorruptError` when the stored value is not one (a tampered store)."""
        value = self.get_meta(name)
        if value is None:
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = minimum - 1
        if number < minimum:
            raise IndexCorruptError(
                f"{self.path} stores {name}={value!r}, not an integer >= {minimum}: the index is damaged. "
                "Rebuild it into a new directory with `rankfunnel index SOURCE --index-dir NEW`."
            )
        return number

    @property
    def generation(self) -> int:
        return self.int_meta("generation")

    def bump_generation(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name='generation'").fetchone()
        gen = (int(row[0]) if row else 0) + 1
        self.set_meta(conn, "generation", gen)
        return gen

    def allocate_keys(self, conn: sqlite3.Connection, n: int) -> np.ndarray:
        row = conn.execute("SELECT value FROM meta WHERE name='next_key'").fetchone()
        start = int(row[0]) if row else 0
        self.set_meta(conn, "next_key", start + n)
        return np.arange(start, start + n, dtype=np.int64)

    # -- writes (inside a transaction) -----------------------------------------------------------------
    def insert(
        self, conn: sqlite3.Connection, docs: Sequence[Document], keys: np.ndarray, vectors: np.ndarray
    ) -> None:
        rows = []
        for doc, key, vec in zip(docs, keys, vectors, strict=True):
            rows.append(
                (
                    doc.id,
                    int(key),
                    doc.title,
                    doc.text,
                    encode_metadata(doc),
                    np.ascontiguousarray(vec, dtype=np.float32).tobytes(),
                )
            )
        try:
            conn.executemany(
                "INSERT INTO docs(id, key, title, text, metadata, vector) VALUES(?,?,?,?,?,?)", rows
            )
        except sqlite3.IntegrityError as exc:
            raise InvalidInputError(
                f"A document id is already stored ({exc}). Pass upsert=True to replace existing documents."
            ) from exc

    def delete_ids(self, conn: sqlite3.Connection, ids: Sequence[str]) -> np.ndarray:
        """Delete rows by id and return their keys."""
        keys: list[int] = []
        for part in _chunks(list(ids)):
            marks = ",".join("?" * len(part))
            keys += [r[0] for r in conn.execute(f"SELECT key FROM docs WHERE id IN ({marks})", part)]
            conn.execute(f"DELETE FROM docs WHERE id IN ({marks})", part)
        return np.asarray(keys, dtype=np.int64)

    # -- reads -----------------------------------------------------------------------------------------
    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def existing(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for part in _chunks(list(ids)):
                marks = ",".join("?" * len(part))
                found.update(
                    r[0] for r in self._conn.execute(f"SELECT id FROM docs WHERE id IN ({marks})", part)
                )
        return found

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT id FROM docs ORDER BY key")]

    def keys(self) -> np.ndarray:
        with self._lock:
            rows = self._conn.execute("SELECT key FROM docs ORDER BY key").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def _docs_where(self, column: str, values: Sequence[Any]) -> dict[Any, tuple[int, Document]]:
        out: dict[Any, tuple[int, Document]] = {}
        with self._lock:
            for part in _chunks(list(values)):
                marks = ",".join("?" * len(part))
                sql = f"SELECT key, id, title, text, metadata FROM docs WHERE {column} IN ({marks})"
                for key, id_, title, text, meta in self._conn.execute(sql, part):
                    metadata = {} if meta == "{}" else json.loads(meta)
                    doc = Document(id=id_, title=title, text=text, metadata=metadata)
                    out[key if column == "key" else id_] = (int(key), doc)
        return out

    def ids_by_keys(self, keys: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        with self._lock:
            for part in _chunks([int(k) for k in keys]):
                marks = ",".join("?" * len(part))
                out.update(self._conn.execute(f"SELECT key, id FROM docs WHERE key IN ({marks})", part))
        return out

    def docs_by_keys(self, keys: Sequence[int]) -> dict[int, Document]:
        return {k: d for k, (_, d) in self._docs_where("key", [int(k) for k in keys]).items()}

    def docs_by_ids(self, ids: Sequence[str]) -> dict[str, Document]:
        return {k: d for k, (_, d) in self._docs_where("id", list(ids)).items()}

    def iter_vectors(self, dim: int, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(keys, vectors)`` chunks in key order: the data a Faiss index is rebuilt from."""
        with self._lock:
            cur = self._conn.execute("SELECT key, vector FROM docs ORDER BY key")
            while part := cur.fetchmany(batch):
                keys = np.asarray([r[0] for r in part], dtype=np.int64)
                sizes = {len(r[1]) if isinstance(r[1], bytes) else -1 for r in part}
                if sizes != {4 * dim}:
                    raise IndexCorruptError(
                        f"{self.path} holds vectors of {sorted(s // 4 for s in sizes)} values, but its dimension is "
                        f"{dim}: the index is damaged. Rebuild it into a new directory with `rankfunnel index`."
                    )
                vecs = np.frombuffer(b"".join(r[1] for r in part), dtype=np.float32).reshape(len(part), dim)
                yield keys, vecs

    def iter_contents(self, batch: int = 5_000) -> Iterator[tuple[np.ndarray, list[str]]]:
        """Yield ``(keys, title + text)`` chunks in key order: what BM25 indexes."""
        with self._lock:
            cur = self._conn.execute("SELECT key, title, text FROM docs ORDER BY key")
            while part := cur.fetchmany(batch):
                keys = np.asarray([r[0] for r in part], dtype=np.int64)
                yield keys, [f"{r[1]}\n{r[2]}" if r[1] else r[2] for r in part]

    def keys_matching(self, flt: Mapping[str, Any]) -> np.ndarray:
        """Keys of documents whose metadata equals every ``field: value`` of ``flt``.

        A list or tuple value matches any of its items. Field names may use dots for nested objects.
        """
        where: list[str] = []
        params: list[Any] = []
        for field, value in (check_filter(flt) or {}).items():
            path = "$." + ".".join(f'"{part}"' for part in field.split("."))
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            alts: list[str] = []
            for v in values:
                if v is None:
                    alts.append("json_type(metadata, ?) = 'null'")
                    params.append(path)
                    continue
                # json_type keeps 1 from matching true and "1" from matching 1
                kinds = "'true','false'" if isinstance(v, bool) else "'text'" if isinstance(v, str) else \
                    "'integer','real'"
                alts.append(f"(json_extract(metadata, ?) = ? AND json_type(metadata, ?) IN ({kinds}))")
                params += [path, int(v) if isinstance(v, bool) else v, path]
            where.append("(" + " OR ".join(alts) + ")")
        sql = "SELECT key FROM docs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY key"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)


def encode_metadata(doc: Document) -> str:
    """The stored JSON of a document's metadata (checked by :func:`rankfunnel.validate.check_metadata`)."""
    check_metadata(doc.metadata, field=f"Document {doc.id!r} metadata")
    return json.dumps(dict(doc.metadata), ensure_ascii=False, sort_keys=True, allow_nan=False)
