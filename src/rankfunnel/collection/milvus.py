r"""A :class:`~rankfunnel.protocols.Collection` stored in Milvus: Milvus Lite (a local ``.db``) or a cluster.

One client code path serves both: a local path opens Milvus Lite (embedded, ``pip install milvus-lite``),
``http://host:19530`` (or https, tcp, unix) a Milvus standalone or cluster. Milvus holds everything: ids,
title, text, JSON metadata, the dense vector and, where the server has BM25 functions (Milvus >= 2.5 and
Milvus Lite 3.x), a BM25 sparse vector computed by Milvus from the text. On servers without BM25
functions, BM25 runs locally in bm25s over the text read back from Milvus (a cache rebuilt after writes,
never a second copy of truth).

Schema of the ``rankfunnel`` collection::

    id        VARCHAR(512)  primary key
    vector    FLOAT_VECTOR(dim)  metric IP (vectors are L2-normalised, so IP = cosine)
    title     VARCHAR(65535)
    content   VARCHAR(65535)  title + "\\n" + text (what embedders, BM25 and rerankers read), analyzer on
    metadata  JSON
    sparse    SPARSE_FLOAT_VECTOR  output of the BM25 function over ``content`` (when supported)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rankfunnel._optional import require
from rankfunnel.collection.base import already_stored, check_unique_ids, not_found
from rankfunnel.collection.milvus_schema import build_schema, doc_from_row, resolve_uri
from rankfunnel.collection.milvus_search import OUT_FIELDS, MilvusSearchMixin
from rankfunnel.collection.milvus_support import (
    LocalBM25,
    check_collection_name,
    check_sizes,
    ids_expression,
)
from rankfunnel.embed import check_same_embedder
from rankfunnel.errors import IndexMismatchError, InvalidInputError, RankfunnelError
from rankfunnel.fusion import FusionConfig
from rankfunnel.protocols import Embedder
from rankfunnel.types import Document
from rankfunnel.validate import check_document

T = TypeVar("T")
_LITE_REFS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def _quiet_lite_iterator_warning(record: logging.LogRecord) -> bool:
    # Milvus Lite has no server-side session timestamp, so every pymilvus query iterator warns that it uses
    # the client's clock instead; that is expected for Lite and only added to the logger for Lite files.
    return "failed to get mvccTs" not in record.getMessage()


class MilvusBackendError(RankfunnelError):
    """Milvus refused an operation or could not be reached; the message names the URI and the fix."""


def _embedder_for(name: str, dim: int, device: str | None) -> Embedder:
    """Rebuild the embedder recorded in a collection (used when the caller passes none)."""
    from rankfunnel.embed import embedder_from_name

    return embedder_from_name(name, dim, device=device)  # type: ignore[no-any-return]


class MilvusCollection(MilvusSearchMixin):
    """Documents, vectors and BM25 in one Milvus collection.

    Args:
        uri: a local path (Milvus Lite; a ``.db`` path, or a folder that will hold ``milvus.db``) or a
            server URI such as ``http://localhost:19530``.
        collection: the Milvus collection name.
        embedder: encodes documents and queries; when None, the embedder recorded in the collection is
            loaded by name (all-MiniLM-L6-v2 when ``create`` makes a new collection).
        create: create the collection (and a Lite file) when missing.
        token: Milvus credentials (``"user:password"`` or an API key); pass from the CLI/service layer.
        index_type: vector index: ``"flat"`` (exact, the default), ``"hnsw"``, ``"ivf_flat"``, ``"autoindex"``
            (any case; Milvus index names).
        hnsw_m, ef_construction, ef_search: HNSW parameters (same names as the faiss backend).
        index_params: extra build parameters for the Milvus index (e.g. ``{"nlist": 1024}``).
        search_params: extra search parameters (e.g. ``{"nprobe": 32}`` for IVF).
        fusion: default fusion for ``retriever="hybrid"`` (:class:`~rankfunnel.fusion.FusionConfig`).
        device: device of the embedder loaded by name.
        bm25: ``"auto"`` (Milvus BM25 function when the server supports it, else local bm25s),
            ``"milvus"`` (require it) or ``"local"`` (always bm25s over the text stored in Milvus).
        batch_size: documents embedded and written per Milvus call.
        timeout: seconds per Milvus call.

    Examples:
        >>> from rankfunnel.embed import HashingEmbedder  # doctest: +SKIP
        >>> col = MilvusCollection("/tmp/x.db", embedder=HashingEmbedder(32), create=True)  # doctest: +SKIP
        >>> col.add([Document(id="1", text="cats purr")])  # doctest: +SKIP
        1
        >>> col.search("cat", k=1, retriever="hybrid")[0].id  # doctest: +SKIP
        '1'
    """

    def __init__(
        self,
        uri: str | Path,
        *,
        collection: str = "rankfunnel",
        embedder: Embedder | None = None,
        create: bool = False,
        token: str = "",
        index_type: str = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int | None = None,
        index_params: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
        fusion: FusionConfig | None = None,
        bm25: str = "auto",
        batch_size: int = 256,
        timeout: float = 30.0,
        device: str | None = None,
    ) -> None:
        if bm25 not in ("auto", "milvus", "local"):
            raise InvalidInputError(f"bm25 must be 'auto', 'milvus' or 'local', got {bm25!r}.")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}.")
        self.name = check_collection_name(collection)
        self.batch_size = batch_size
        self.timeout = timeout
        self.fusion = fusion or FusionConfig()
        self._device = device
        index = index_type.upper()
        build = dict(index_params or {})
        if index == "HNSW":
            build = {"M": hnsw_m, "efConstruction": ef_construction, **build}
        self.search_params = dict(search_params or {})
        if ef_search is not None:
            self.search_params.setdefault("ef", ef_search)
        self._pm = require("pymilvus", "milvus")
        self.uri, self._lite_path = resolve_uri(uri, create)
        self._client = self._connect(token)
        try:  # from here on, a failure closes the client (and the Lite server) before it propagates
            if not self._call(lambda: self._client.has_collection(self.name), "check the collection"):
                if not create:
                    raise InvalidInputError(
                        f"Milvus at {self.uri} has no collection {self.name!r}. Create it first (rankfunnel "
                        "index ... --backend milvus, or create=True), or pass the right --collection."
                    )
                if embedder is None:
                    from rankfunnel.embed import SentenceTransformerEmbedder

                    embedder = SentenceTransformerEmbedder(device=device)
                self._create(embedder, index, build, bm25)
            self._adopt(embedder, index, bm25)
            # Searches need the collection loaded; a no-op when it already is (a reopened Lite file is released).
            self._call(lambda: self._client.load_collection(self.name), "load the collection")
        except BaseException:
            self.close()
            raise
        self._local_bm25 = LocalBM25(self._iter_texts)

    def _create(self, embedder: Embedder, index: str, build: dict[str, Any], bm25: str) -> None:
        """Create the collection; with ``bm25="auto"``, without the BM25 function where the server lacks it."""
        props = {"rankfunnel.embedder": embedder.name, "rankfunnel.index": index, "rankfunnel.schema": "1"}
        for native in [True, False] if bm25 == "auto" else [bm25 == "milvus"]:
            schema, ip = build_schema(self._pm, self._client, embedder.dim, index, build, native)
            try:
                self._client.create_collection(
                    self.name, schema=schema, index_params=ip, properties=props, consistency_level="Strong"
                )
                return
            except Exception as exc:
                if native and bm25 == "auto":
                    continue  # server without BM25 functions (Milvus < 2.5): use bm25s over stored text
                raise MilvusBackendError(f"Milvus at {self.uri} could not create {self.name!r}: {exc}") from exc

    def _adopt(self, embedder: Embedder | None, index: str, bm25: str) -> None:
        """Read the collection's recorded embedder, dimension, index and BM25 function; check ``embedder``."""
        desc = self._call(lambda: self._client.describe_collection(self.name), "describe the collection")
        props = desc.get("properties") or {}
        fields = {f["name"]: f for f in desc.get("fields", [])}
        if "vector" not in fields or "content" not in fields or "rankfunnel.embedder" not in props:
            raise IndexMismatchError(
                f"Milvus collection {self.name!r} at {self.uri} was not created by rankfunnel (no 'vector'/"
                "'content' fields or embedder record). Choose another --collection name."
            )
        self.dim = int(fields["vector"]["params"]["dim"])
        self.embedder_name = str(props["rankfunnel.embedder"])
        self.index_type = str(props.get("rankfunnel.index", index))
        if embedder is not None and (embedder.name != self.embedder_name or embedder.dim != self.dim):
            raise IndexMismatchError(
                f"Milvus collection {self.name!r} was built with embedder {self.embedder_name!r} "
                f"(dim {self.dim}), but {embedder.name!r} (dim {embedder.dim}) was given. Use the same "
                "embedder, or index into a new collection."
            )
        self._embedder = embedder
        native = any(
            str(f.get("type")).endswith("BM25") or f.get("type") == 1 for f in desc.get("functions", [])
        )
        if bm25 == "milvus" and not native:
            raise MilvusBackendError(
                f"Milvus at {self.uri} has no BM25 function on {self.name!r}; "
                "use bm25='auto' or 'local' (bm25s over the stored text)."
            )
        self.bm25_mode = "milvus" if native and bm25 != "local" else "local"

    # -- connection -------------------------------------------------------------------------------------
    def _connect(self, token: str) -> Any:
        try:
            client = self._pm.MilvusClient(self.uri, token=token, timeout=self.timeout)
        except Exception as exc:
            hint = (
                "Another process may hold this Milvus Lite file; Lite allows one process per file - use a "
                "Milvus server for shared access."
                if self._lite_path
                else "Check that the Milvus server is running and reachable, and the token."
            )
            raise MilvusBackendError(f"Cannot connect to Milvus at {self.uri}: {exc}. {hint}") from exc
        if self._lite_path:
            with _LITE_LOCK:
                _LITE_REFS[self._lite_path] = _LITE_REFS.get(self._lite_path, 0) + 1
            logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_quiet_lite_iterator_warning)
        return client

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except RankfunnelError:
            raise
        except Exception as exc:  # pymilvus raises MilvusException and grpc errors; never leak them raw
            raise MilvusBackendError(f"Milvus at {self.uri} failed to {what}: {exc}") from exc

    def close(self) -> None:
        """Close the client (and stop the embedded Lite server when no other collection uses it)."""
        client, self._client = getattr(self, "_client", None), None
        if client is None:
            return
        try:
            client.close()
        finally:
            if self._lite_path:
                with _LITE_LOCK:
                    left = _LITE_REFS.get(self._lite_path, 1) - 1
                    _LITE_REFS[self._lite_path] = max(left, 0)
                if left <= 0:
                    try:  # stop the embedded Lite server thread of this file (pymilvus started it)
                        from milvus_lite.server_manager import server_manager_instance
                    except ImportError:  # pragma: no cover - an old milvus-lite without one
                        return
                    server_manager_instance.release_server(self._lite_path)

    def drop(self) -> None:
        """Delete the whole collection from Milvus (irreversible) and close."""
        self._call(lambda: self._client.drop_collection(self.name), "drop the collection")
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = _embedder_for(self.embedder_name, self.dim, self._device)
        return self._embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        """Swap the encoder for one giving the same vectors (e.g. a ``PooledEmbedder`` around it)."""
        check_same_embedder(embedder, self.embedder_name, self.dim)
        self._embedder = embedder

    # -- writes -----------------------------------------------------------------------------------------
    def add(
        self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
    ) -> int:
        """Embed and write documents in batches; returns how many were written.

        Without ``upsert``, an id already in the collection raises :class:`InvalidInputError` before its
        batch is written; earlier batches stay committed (so an interrupted run can resume). Memory stays
        bounded by one batch: duplicates across batches are found in Milvus, not in a client-side set.
        """
        import sys

        from rankfunnel.progress import progress

        written = 0
        batch: list[Document] = []
        show = show_progress if show_progress is not None else sys.stderr.isatty()
        try:
            with progress(f"milvus {self.name} (documents)", enabled=show) as bar:
                for doc in docs:
                    batch.append(doc)
                    if len(batch) >= self.batch_size:
                        written += self._write(batch, upsert)
                        bar.advance(len(batch))
                        batch = []
                if batch:
                    written += self._write(batch, upsert)
                    bar.advance(len(batch))
        finally:
            if written:
                self._local_bm25.invalidate()
        return written

    def _write(self, batch: list[Document], upsert: bool) -> int:
        batch = [check_document(d, i) for i, d in enumerate(batch)]
        ids = check_unique_ids(batch)
        for d in batch:
            check_sizes(d.id, d.title, d.content)
        if not upsert:
            found = self._call(
                lambda: self._client.query(self.name, filter=ids_expression(ids), output_fields=["id"]),
                "check existing ids",
            )
            if found:
                raise already_stored(str(r["id"]) for r in found)
        vectors = self.embedder.encode([d.content for d in batch])
        rows = [
            {"id": d.id, "vector": v, "title": d.title, "content": d.content, "metadata": dict(d.metadata)}
            for d, v in zip(batch, vectors.tolist(), strict=True)
        ]
        op = self._client.upsert if upsert else self._client.insert
        self._call(lambda: op(self.name, rows), "write documents")
        return len(rows)

    def _delete(self, ids: list[str]) -> int:
        present = {d.id for d in self._fetch(ids, fields=["id"])}
        missing = [i for i in ids if i not in present]
        if missing:
            raise not_found(missing, self._where, deleting=True)
        # by an escaped expression: pymilvus' ids= form splices ids into the expression unescaped
        self._call(lambda: self._client.delete(self.name, filter=ids_expression(ids)), "delete documents")
        self._local_bm25.invalidate()
        return len(ids)

    # -- reads ------------------------------------------------------------------------------------------
    def _fetch(self, ids: Sequence[str], fields: list[str] | None = None) -> list[Document]:
        out: list[Document] = []
        fields = fields or OUT_FIELDS
        for s in range(0, len(ids), 1000):
            chunk = list(ids[s : s + 1000])
            rows = self._call(
                lambda c=chunk: self._client.query(  # type: ignore[misc]
                    self.name, filter=ids_expression(c), output_fields=fields
                ),
                "read documents",
            )
            out += [doc_from_row(r) for r in rows]
        return out

    def _documents(self, ids: list[str]) -> dict[str, Document]:
        return {d.id: d for d in self._fetch(ids)}

    @property
    def _where(self) -> str:  # type: ignore[override]
        return f"Milvus collection {self.name!r}"

    def _iter_texts(self) -> Iterator[tuple[str, str]]:
        it = self._call(
            lambda: self._client.query_iterator(
                self.name, batch_size=1000, filter="", output_fields=["id", "content"]
            ),
            "scan documents",
        )
        try:
            while True:
                page = self._call(it.next, "scan documents")
                if not page:
                    break
                for r in page:
                    yield str(r["id"]), str(r["content"])
        finally:
            it.close()

    def ids(self) -> list[str]:
        """Every id in the collection (Milvus order)."""
        return [i for i, _ in self._iter_texts()]

    def __len__(self) -> int:
        rows = self._call(
            lambda: self._client.query(self.name, filter="", output_fields=["count(*)"]), "count"
        )
        return int(rows[0]["count(*)"])

    def flush(self) -> None:
        """Seal growing segments (a server-side durability/compaction point; searches never need it)."""
        self._call(lambda: self._client.flush(self.name), "flush")

    def info(self) -> dict[str, Any]:
        """Backend facts for ``rankfunnel info``."""
        return {
            "backend": "milvus",
            "uri": self.uri,
            "lite": self._lite_path is not None,
            "collection": self.name,
            "documents": len(self),
            "embedder": self.embedder_name,
            "dim": self.dim,
            "metric": "IP",
            "index": self.index_type,
            "bm25": self.bm25_mode,
        }
