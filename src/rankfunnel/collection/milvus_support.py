"""Helpers of :mod:`rankfunnel.collection.milvus`: safe filter expressions, size checks and a local BM25 fallback.

Kept apart so that they can be tested without a Milvus connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError
from rankfunnel.validate import check_filter

# Milvus caps VARCHAR fields at 65,535 (bytes on a Milvus server; characters in Milvus Lite). We check the
# UTF-8 byte length, the stricter of the two, so a collection that works in Lite also works on a cluster.
MAX_VARCHAR = 65_535
MAX_ID_BYTES = 512
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
# Escapes understood by both the Milvus server's and Milvus Lite's expression parsers.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def check_collection_name(name: str) -> str:
    """Milvus collection names: a letter or underscore, then letters, digits or underscores."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidInputError(
            f"Invalid Milvus collection name {name!r}: use letters, digits and underscores, starting with a "
            "letter or underscore (for example 'rankfunnel' or 'scifact_minilm')."
        )
    return name


def quote(value: str) -> str:
    """A double-quoted Milvus string literal for ``value``; user text is escaped, never spliced in raw."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            raise InvalidInputError(
                f"Filter value {value!r} contains the control character {ch!r}, which Milvus expressions "
                "cannot carry; remove it from the metadata value."
            )
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def literal(value: Any) -> str:
    """A Milvus literal for a JSON scalar that :func:`~rankfunnel.validate.check_filter` accepted."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return quote(str(value))


def filter_expression(filter: Mapping[str, Any] | None, field: str = "metadata") -> str:
    r"""Translate a metadata equality filter into a Milvus boolean expression.

    ``{"lang": "en", "year": [2023, 2024]}`` becomes ``metadata["lang"] == "en" and
    (metadata["year"] == 2023 or metadata["year"] == 2024)``. Keys and values are escaped.

    Examples:
        >>> print(filter_expression({"lang": 'e"n', "tags.year": [2023, 2024]}))
        metadata["lang"] == "e\"n" and (metadata["tags"]["year"] == 2023 or metadata["tags"]["year"] == 2024)
    """
    filter = check_filter(filter)
    if not filter:
        return ""
    parts = []
    for key, value in filter.items():
        ref = field + "".join(f"[{quote(p)}]" for p in key.split("."))  # same dotted paths as LocalCollection
        if isinstance(value, list | tuple | set | frozenset):
            values = sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
        else:
            values = [value]
        # "any of" as OR-ed equalities: Milvus Lite rejects `json_path in [...]`, and both parse this form
        alts = [f"{ref} is null" if v is None else f"{ref} == {literal(v)}" for v in values]
        parts.append(alts[0] if len(alts) == 1 else "(" + " or ".join(alts) + ")")
    return " and ".join(parts)


def ids_expression(ids: Sequence[str]) -> str:
    """``id in ["a", "b"]`` with every id escaped."""
    return f"id in [{', '.join(quote(i) for i in ids)}]"


def check_sizes(doc_id: str, title: str, content: str) -> None:
    """Refuse (never truncate) ids and texts that exceed Milvus' VARCHAR limits."""
    if not doc_id:
        raise InvalidInputError("A document has an empty id: give every document a non-empty id.")
    n_id = len(doc_id.encode("utf-8"))
    if n_id > MAX_ID_BYTES:
        raise InvalidInputError(
            f"Document id {doc_id[:40]!r}... is {n_id} bytes; Milvus ids are limited to "
            f"{MAX_ID_BYTES} bytes here. Use shorter ids (e.g. a hash of the long key)."
        )
    for field, value in (("title", title), ("text", content)):
        n = len(value.encode("utf-8"))
        if n > MAX_VARCHAR:
            raise InvalidInputError(
                f"Document {doc_id!r}: its {field} is {n:,} bytes, over Milvus' VARCHAR limit of "
                f"{MAX_VARCHAR:,} bytes. rankfunnel does not truncate silently: split long documents into "
                "passages before indexing (e.g. ids 'doc#0', 'doc#1'), which also helps rerankers, or use "
                "the faiss backend."
            )


def rrf_fuse(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion, best first; ties broken by first appearance.

    Written out (ten lines) because the fallback path must not depend on another engine's fusion details.
    """
    scores: dict[str, float] = {}
    for ranking in rankings:
        for r, doc_id in enumerate(ranking):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + r + 1)
    order = {d: i for i, d in enumerate(dict.fromkeys(d for rk in rankings for d in rk))}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


class LocalBM25:
    """bm25s over the text that Milvus holds, for servers without BM25 functions (Milvus < 2.5).

    It is a cache, not a second copy of truth: it is rebuilt from Milvus content on the first BM25 search
    after any write, via ``load`` (an iterator of ``(id, text)`` pairs read from the collection).
    """

    def __init__(self, load: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self._load = load
        self._ids: list[str] = []
        self._retriever: Any = None
        self.stale = True

    def invalidate(self) -> None:
        self.stale = True

    def _build(self) -> None:
        import bm25s

        pairs = list(self._load())
        self._ids = [i for i, _ in pairs]
        self._retriever = None
        if pairs:
            tokens = bm25s.tokenize([t for _, t in pairs], stopwords="en", show_progress=False)
            self._retriever = bm25s.BM25()
            self._retriever.index(tokens, show_progress=False)
        self.stale = False

    def search(
        self, queries: Sequence[str], k: int, allowed: set[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (id, score) per query with score > 0, optionally restricted to ``allowed`` ids."""
        if self.stale:
            self._build()
        if self._retriever is None:
            return [[] for _ in queries]
        import bm25s

        out = []
        for q in queries:
            toks = bm25s.tokenize([q], stopwords="en", return_ids=False, show_progress=False)[0]
            toks = [t for t in toks if t in self._retriever.vocab_dict]
            scores = (
                np.asarray(self._retriever.get_scores(toks), dtype=np.float64)
                if toks
                else np.zeros(len(self._ids))
            )
            order = np.argsort(-scores, kind="stable")
            hits: list[tuple[str, float]] = []
            for i in order:
                if scores[i] <= 0 or len(hits) >= k:
                    break
                if allowed is None or self._ids[i] in allowed:
                    hits.append((self._ids[i], float(scores[i])))
            out.append(hits)
        return out
