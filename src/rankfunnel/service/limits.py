"""Per-request input limits, checked once at the entry point with messages that name the limit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rankfunnel import validate
from rankfunnel.errors import InvalidInputError
from rankfunnel.service.config import Limits


class LimitExceededError(InvalidInputError):
    """A request is larger than a configured limit; ``status`` is 413 (too much) or 422 (too long)."""

    def __init__(self, message: str, status: int = 413) -> None:
        super().__init__(message)
        self.status = status


def check_query(query: str, limits: Limits) -> None:
    """Reject an empty or unencodable query, or one longer than ``max_query_chars`` (422)."""
    validate.check_query(query)
    if len(query) > limits.max_query_chars:
        raise LimitExceededError(
            f"The query has {len(query)} characters; the limit max_query_chars is {limits.max_query_chars}. "
            "Shorten the query or raise the limit (--max-query-chars).",
            status=422,
        )


def check_documents(docs: Sequence[str], limits: Limits, *, field: str = "documents") -> None:
    """Reject no documents, an empty one, too many (413) or too long ones (413)."""
    if len(docs) == 0:
        raise InvalidInputError(f"'{field}' is empty: send at least one document.")
    if len(docs) > limits.max_documents:
        raise LimitExceededError(
            f"{len(docs)} documents in '{field}'; the limit max_documents is {limits.max_documents}. "
            "Split the request or raise the limit (--max-documents)."
        )
    for i, d in enumerate(docs):
        validate.check_text(d, field=f"{field}[{i}]")
        if len(d) > limits.max_doc_chars:
            raise LimitExceededError(
                f"{field}[{i}] has {len(d)} characters; the limit max_doc_chars is {limits.max_doc_chars}. "
                "Chunk long documents or raise the limit (--max-doc-chars)."
            )


def check_top(top_k: int, top_n: int, limits: Limits) -> None:
    """Reject ``top_k``/``top_n`` below 1 or above the limits."""
    for name, value, limit in (("top_k", top_k, limits.max_documents), ("top_n", top_n, limits.max_top_n)):
        validate.check_count(value, field=name, maximum=None)
        if value > limit:
            raise LimitExceededError(
                f"{name}={value} is above the limit of {limit} "
                f"({'max_documents' if name == 'top_k' else 'max_top_n'}); ask for fewer results.",
                status=422,
            )


def check_chars(value: str, limit: int, *, field: str, limit_name: str, flag: str) -> None:
    """Reject a string field longer than ``limit`` characters (413), naming the field and the limit."""
    if len(value) > limit:
        raise LimitExceededError(
            f"{field} has {len(value)} characters; the limit {limit_name} is {limit}. "
            f"Send less or raise the limit ({flag})."
        )


def check_json_size(value: Mapping[str, Any] | None, limits: Limits, *, field: str) -> None:
    """Reject metadata (or a filter) whose compact JSON is larger than ``max_metadata_bytes`` (413)."""
    if not value:
        return
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"))
    if size > limits.max_metadata_bytes:
        raise LimitExceededError(
            f"{field} is {size} bytes as JSON; the limit max_metadata_bytes is {limits.max_metadata_bytes}. "
            "Keep large values in the text (or elsewhere) or raise the limit (--max-metadata-bytes)."
        )


def check_new_documents(docs: Sequence[Any], limits: Limits) -> None:
    """Caps on every field of a ``/v1/documents`` batch: count, id, title, text and metadata size (413).

    ``docs`` are objects with ``id``, ``title``, ``text`` and ``metadata`` attributes.
    """
    if len(docs) == 0:
        raise InvalidInputError("'documents' is empty: send at least one document.")
    if len(docs) > limits.max_documents:
        raise LimitExceededError(
            f"{len(docs)} documents in 'documents'; the limit max_documents is {limits.max_documents}. "
            "Send them in several requests or raise the limit (--max-documents)."
        )
    for i, d in enumerate(docs):
        check_chars(
            d.id, limits.max_id_chars, field=f"documents[{i}].id", limit_name="max_id_chars", flag="--max-id-chars"
        )
        check_chars(
            d.title,
            limits.max_title_chars,
            field=f"documents[{i}].title",
            limit_name="max_title_chars",
            flag="--max-title-chars",
        )
        check_chars(
            d.text,
            limits.max_doc_chars,
            field=f"documents[{i}].text",
            limit_name="max_doc_chars",
            flag="--max-doc-chars",
        )
        check_json_size(d.metadata, limits, field=f"documents[{i}].metadata")
        if not d.text.strip() and not d.title.strip():
            raise InvalidInputError(f"documents[{i}] has neither text nor title: send some text to index.")
