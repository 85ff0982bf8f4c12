"""Per-request input limits, checked once at the entry point with messages that name the limit."""

from __future__ import annotations

from collections.abc import Sequence

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
