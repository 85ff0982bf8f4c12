"""Reranker base class: raw scores from ``predict``, explicit normalisation, ranking helpers on top."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.calibration import Calibration
from rankfunnel.types import Hit
from rankfunnel.validate import check_count, check_query, check_text

__all__ = ["BaseReranker", "Calibration"]


#: Characters kept per model token before tokenising (the embedder's rule, rankfunnel.embed): normal text needs
#: 4-6 characters per token, so the cut never changes what the model reads; it bounds the work of tokenising a
#: stored 20 MB document to what the model's length limit lets it read.
CHARS_PER_TOKEN_CAP = 16


def check_pairs(
    pairs: Sequence[tuple[str, str]], max_tokens: int | None = None
) -> list[tuple[str, str]]:
    """``pairs`` as a list of string tuples, each text cut to ``max_tokens`` x 16 characters (when given).

    Every local reranker calls this before tokenising, so the cost of scoring a pair is bounded by the
    model's length limit whatever the stored document holds.

    Raises:
        InvalidInputError: a pair is not two strings (the message names it).

    Examples:
        >>> check_pairs([("q", "x" * 100)], max_tokens=2)[0][1] == "x" * 32
        True
    """
    out: list[tuple[str, str]] = []
    cap = None if max_tokens is None else max(int(max_tokens), 1) * CHARS_PER_TOKEN_CAP
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise InvalidInputError(f"Pair {i} is {pair!r}: pass (query, document) tuples of two strings.")
        q, d = pair
        if not isinstance(q, str) or not isinstance(d, str):
            raise InvalidInputError(
                f"Pair {i} holds {type(q).__name__}/{type(d).__name__}: query and document must be strings.")
        if cap is not None:
            q, d = q[:cap], d[:cap]
        check_text(q, field=f"Pair {i} query", allow_empty=True)
        check_text(d, field=f"Pair {i} document", allow_empty=True)
        out.append((q, d))
    return out


class BaseReranker(ABC):
    """Implements ``score``, ``rank``, ``rerank`` and ``rerank_many`` on top of ``predict``.

    Subclasses implement :meth:`predict` (raw scores for arbitrary pairs, batched internally), which lets
    callers batch pairs across queries.
    """

    name: str = "reranker"
    calibration: Calibration = Calibration()

    @abstractmethod
    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw scores (float32, shape ``(len(pairs),)``) for (query, document) pairs."""

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated 0-1 scores for raw scores."""
        return self.calibration(raw)

    def score(self, query: str, docs: Sequence[str]) -> np.ndarray:
        """Raw scores of ``docs`` for one query, in input order."""
        check_query(query)
        if len(docs) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.predict([(query, d) for d in docs])

    def rank(self, query: str, docs: Sequence[str], top_n: int | None = None) -> list[tuple[int, float, float]]:
        """``(index, raw, normalised)`` for the best ``top_n`` documents, best first; ties keep input order."""
        raw = self.score(query, docs)
        order = np.argsort(-raw, kind="stable")
        if top_n is not None:
            check_count(top_n, field="top_n", maximum=None)
            order = order[:top_n]
        norm = self.normalise(raw)
        return [(int(i), float(raw[i]), float(norm[i])) for i in order]

    def rerank(self, query: str, hits: Sequence[Hit], top_n: int | None = None) -> list[Hit]:
        """Rerank stage-1 hits (which must carry their ``document``) and return the top ``top_n``."""
        return self.rerank_many([query], [hits], top_n)[0]

    def rerank_many(self, queries: Sequence[str], hit_lists: Sequence[Sequence[Hit]], top_n: int | None = None
                    ) -> list[list[Hit]]:
        """Rerank several queries' hits with one batched ``predict`` over all their pairs."""
        if top_n is not None:
            check_count(top_n, field="top_n", maximum=None)
        if len(queries) != len(hit_lists):
            raise InvalidInputError(f"{len(queries)} queries but {len(hit_lists)} hit lists: pass one list per query.")
        pairs: list[tuple[str, str]] = []
        for q, hits in zip(queries, hit_lists, strict=True):
            check_query(q)
            for h in hits:
                if h.document is None:
                    raise InvalidInputError(f"Hit {h.id!r} carries no document text; fetch documents before reranking.")
                pairs.append((q, h.document.content))
        raw_all = self.predict(pairs) if pairs else np.zeros(0, dtype=np.float32)
        out: list[list[Hit]] = []
        start = 0
        for hits in hit_lists:
            raw = raw_all[start:start + len(hits)]
            start += len(hits)
            norm = self.normalise(raw)
            order = np.argsort(-raw, kind="stable")
            if top_n is not None:
                order = order[:top_n]
            out.append([
                replace(hits[i], rank=r + 1, score=float(norm[i]), rerank_score=float(raw[i]))
                for r, i in enumerate(order)
            ])
        return out
