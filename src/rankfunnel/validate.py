r"""Input checks shared by every entry point: one set of messages and one set of limits.

Collections, the pipeline, rerankers and the service call these instead of keeping their own copies, so a
bad value gets the same :class:`~rankfunnel.errors.InvalidInputError` (naming the field and the fix)
whichever way it came in. Base layer: imports only :mod:`rankfunnel.errors` and :mod:`rankfunnel.types`.

Examples:
    >>> check_query("red apples")
    'red apples'
    >>> check_count(10, field="top_k")
    10
    >>> check_text("bad \ud800", field="query")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    rankfunnel.errors.InvalidInputError: query is not valid Unicode ...
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

from rankfunnel.errors import InvalidInputError
from rankfunnel.types import RETRIEVERS, Document

#: The largest ``k`` / ``top_k`` / ``top_n`` any backend accepts (Milvus' cap on a search's ``limit``). One
#: limit for every backend, so a call that works on the faiss collection also works on Milvus.
MAX_K = 16_384

#: Metadata keys usable in filters: letters, digits, ``_`` and ``-``, with dots addressing nested objects.
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
MAX_FILTER_KEY = 128
_SCALARS = (str, int, float, bool)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(value: Any, *, field: str, allow_empty: bool = False) -> str:
    """A string that UTF-8 can encode (no lone surrogates) and, unless ``allow_empty``, not blank."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string, got {type(value).__name__}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise InvalidInputError(
            f"{field} is not valid Unicode: it holds the lone surrogate {bad!r} at position {exc.start}; "
            "remove it or replace it (e.g. decode input bytes with errors='replace')."
        ) from None
    if not allow_empty and not value.strip():
        raise InvalidInputError(f"{field} is empty: pass a non-empty string.")
    return value


def check_query(query: Any, *, field: str = "query") -> str:
    """A non-empty, encodable query string."""
    return check_text(query, field=field)


def check_queries(queries: Any, *, verb: str = "search_many") -> list[str]:
    """A list of queries (never one bare string), each checked by :func:`check_query`."""
    if isinstance(queries, str) or not isinstance(queries, Sequence):
        raise InvalidInputError(f"{verb}() takes a list of queries; use search() for one query.")
    qs = list(queries)
    if len(qs) == 1:
        return [check_query(qs[0])]
    return [check_query(q, field=f"queries[{i}]") for i, q in enumerate(qs)]


def check_count(value: Any, *, field: str, maximum: int | None = MAX_K) -> int:
    """An integer in ``1..maximum`` (``k``, ``top_k``, ``top_n``); numpy integers are accepted."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 1:
        raise InvalidInputError(f"{field} must be an integer >= 1, got {value!r}.")
    if maximum is not None and int(value) > maximum:
        raise InvalidInputError(f"{field} must be at most {maximum}, got {value!r}; ask for fewer results.")
    return int(value)


def check_retriever(retriever: Any, *, field: str = "retriever") -> str:
    """One of ``dense``, ``bm25``, ``hybrid``."""
    if retriever not in RETRIEVERS:
        raise InvalidInputError(f"{field}={retriever!r} is unknown; use one of {', '.join(RETRIEVERS)}.")
    return str(retriever)


def _check_filter_value(value: Any, key: str) -> None:
    if value is None:
        return
    if not isinstance(value, _SCALARS):
        raise InvalidInputError(
            f"Filter value for {key!r} is a {type(value).__name__}; use str, int, float, bool or None, "
            "or a list of those (meaning 'any of')."
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"Filter value for {key!r} must be finite, got {value}.")
    if isinstance(value, str):
        check_text(value, field=f"filter value for {key!r}", allow_empty=True)


def check_filter(filter: Any) -> Mapping[str, Any] | None:
    """A metadata equality filter: ``{key: value}`` or ``{key: [any, of]}``; None or ``{}`` means no filter.

    Examples:
        >>> check_filter({"lang": "en", "tags.year": [2023, 2024]})
        {'lang': 'en', 'tags.year': [2023, 2024]}
    """
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidInputError(
            f"filter must be a mapping of metadata key -> value, e.g. {{'lang': 'en'}}, got {type(filter).__name__}."
        )
    for key, value in filter.items():
        if not isinstance(key, str) or len(key) > MAX_FILTER_KEY or not _FILTER_KEY.match(key):
            raise InvalidInputError(
                f"Filter key {key!r} is not a plain metadata key; use letters, digits, '_' and '-', "
                f"with dots for nested keys (e.g. 'meta.year'), at most {MAX_FILTER_KEY} characters."
            )
        if isinstance(value, list | tuple | set | frozenset):
            if not value:
                raise InvalidInputError(f"Filter list for {key!r} is empty: it would match nothing.")
            for v in value:
                _check_filter_value(v, key)
        else:
            _check_filter_value(value, key)
    return filter


def check_id(value: Any, *, field: str = "id") -> str:
    """A document id: a non-blank, encodable string without control characters."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string, got {type(value).__name__} ({value!r}).")
    check_text(value, field=field)
    bad = _CONTROL.search(value)
    if bad:
        # every backend must be able to name the id again (Milvus expressions cannot carry these characters)
        raise InvalidInputError(
            f"{field} {value[:40]!r} holds the control character {bad.group()!r}; ids must be printable text."
        )
    return value


def check_ids(ids: Any, *, verb: str) -> list[str]:
    """A list of ids for ``get``/``delete`` (never one bare string), each checked by :func:`check_id`."""
    if isinstance(ids, str) or not isinstance(ids, Sequence | set | frozenset):
        raise InvalidInputError(f"{verb}() takes a list of ids, not one string: wrap it as [id].")
    return [check_id(i, field=f"ids[{n}]") for n, i in enumerate(ids)]


def check_metadata(metadata: Any, *, field: str = "metadata") -> Mapping[str, Any]:
    """A JSON-serialisable mapping whose keys and strings are encodable Unicode."""
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"{field} must be a mapping (a JSON object), got {type(metadata).__name__}.")
    try:
        json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{field} is not valid Unicode: it holds a lone surrogate ({exc.reason}); remove or replace it."
        ) from None
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{field} is not JSON-serialisable ({exc}); use str, finite numbers, bool, None, lists and dicts."
        ) from None
    return metadata


def check_document(item: Any, i: int = 0) -> Document:
    """One input document (a :class:`Document` or a mapping with id/title/text/metadata), fully checked."""
    if isinstance(item, Mapping):
        if "id" not in item:
            raise InvalidInputError(f"Document #{i} has no 'id' key; every document needs a unique id.")
        item = Document(
            id=item["id"],
            text=item.get("text", ""),
            title=item.get("title") or "",
            metadata=item.get("metadata") or {},
        )
    if not isinstance(item, Document):
        raise InvalidInputError(f"Item #{i} is a {type(item).__name__}; pass rankfunnel.Document objects.")
    if not isinstance(item.id, str) or not item.id.strip():
        raise InvalidInputError(
            f"Document #{i} has an empty or non-string id ({item.id!r}); ids must be non-empty strings."
        )
    check_id(item.id, field=f"Document #{i} id")
    check_text(item.title, field=f"Document {item.id!r} title", allow_empty=True)
    check_text(item.text, field=f"Document {item.id!r} text", allow_empty=True)
    check_metadata(item.metadata, field=f"Document {item.id!r} metadata")
    return item
