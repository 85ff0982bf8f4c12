"""Schema, URI and row helpers of :mod:`rankfunnel.collection.milvus` (no Milvus connection needed to import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rankfunnel.collection.milvus_support import MAX_ID_BYTES, MAX_VARCHAR
from rankfunnel.errors import InvalidInputError
from rankfunnel.types import Document

SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:", "grpc://")


def resolve_uri(uri: str | Path, create: bool) -> tuple[str, str | None]:
    """``(uri for pymilvus, Lite file path or None)``; a folder means ``folder/milvus.db`` (Milvus Lite)."""
    text = str(uri)
    if text.startswith(SERVER_SCHEMES):
        return text, None
    path = Path(text).expanduser()
    if path.suffix != ".db":  # a folder, like the faiss backend's index directory
        path = path / "milvus.db"
    if not path.exists():
        if not create:
            raise InvalidInputError(
                f"No Milvus Lite database at {path}. Build it first (rankfunnel index ... "
                "--backend milvus) or pass create=True."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    return str(path.resolve()), str(path.resolve())


def build_schema(
    pm: Any, client: Any, dim: int, index: str, index_params: dict[str, Any], native_bm25: bool
) -> tuple[Any, Any]:
    """The rankfunnel collection schema and its index parameters (see :mod:`rankfunnel.collection.milvus`)."""
    schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", pm.DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    schema.add_field("vector", pm.DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("title", pm.DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("content", pm.DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=native_bm25)
    schema.add_field("metadata", pm.DataType.JSON)
    ip = client.prepare_index_params()
    ip.add_index(field_name="vector", index_type=index, metric_type="IP", params=index_params)
    if native_bm25:
        schema.add_field("sparse", pm.DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            pm.Function(
                name="content_bm25",
                function_type=pm.FunctionType.BM25,
                input_field_names=["content"],
                output_field_names=["sparse"],
            )
        )
        ip.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return schema, ip


def doc_from_row(row: dict[str, Any]) -> Document:
    """A Document from a Milvus row; ``content`` is title, newline, text (or the text alone)."""
    title = row.get("title") or ""
    content = row.get("content") or ""
    text = content[len(title) + 1 :] if title else content
    return Document(id=str(row["id"]), title=title, text=text, metadata=row.get("metadata") or {})
