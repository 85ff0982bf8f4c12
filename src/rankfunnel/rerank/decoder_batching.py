"""Token windows of long documents for :mod:`rankfunnel.rerank.decoder`.

Pure Python over token counts (no torch), so the planning is cheap and unit-testable; the token-budget
batches are :func:`rankfunnel.rerank.batching.token_budget_batches`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rankfunnel.rerank.prompts import EncodedPair


@dataclass(frozen=True, slots=True)
class Unit:
    """One sequence to score: a document window between its prompt prefix and suffix."""

    pair: int  # index of the (query, document) pair in the request
    window: int  # index of the window inside the document
    prefix: tuple[int, ...]
    body: tuple[int, ...]  # window tokens + suffix tokens

    @property
    def body_len(self) -> int:
        return len(self.body)

    @property
    def full_len(self) -> int:
        return len(self.prefix) + len(self.body)


def windows(n: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, end)`` windows of at most ``size`` tokens covering ``0..n``, neighbours sharing ``overlap``.

    Examples:
        >>> windows(10, 4, 1)
        [(0, 4), (3, 7), (6, 10)]
        >>> windows(3, 4, 1)
        [(0, 3)]
    """
    if n <= size:
        return [(0, n)]
    stride = size - overlap
    out = [(s, s + size) for s in range(0, n - size + 1, stride)]
    if out[-1][1] < n:
        out.append((n - size, n))
    return out


def make_units(
    encoded: Sequence[EncodedPair],
    pair_ids: Sequence[int],
    max_doc_tokens: int,
    overlap: int,
    max_chunks: int | None,
) -> tuple[list[Unit], int]:
    """Units of one query's pairs, and how many documents lost windows to ``max_chunks``."""
    units: list[Unit] = []
    cut = 0
    for enc, pid in zip(encoded, pair_ids, strict=True):
        spans = windows(len(enc.doc), max_doc_tokens, overlap)
        if max_chunks is not None and len(spans) > max_chunks:
            spans, cut = spans[:max_chunks], cut + 1
        for w, (a, b) in enumerate(spans):
            units.append(Unit(pid, w, enc.prefix, enc.doc[a:b] + enc.suffix))
    return units, cut
