"""Token-budget batching, shared by the fast encoder path and the decoder reranker.

Hand-written because sentence-transformers and transformers only cut fixed-count batches; packing by padded
token count is what removes padding waste and bounds memory. Pure Python over token counts (no torch), so the
planning is cheap and unit-testable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Order = Literal["ascending", "descending", "input"]


def token_budget_batches(
    lengths: Sequence[int],
    budget: int | None,
    *,
    max_rows: int | None = None,
    fixed_len: int = 0,
    order: Order = "ascending",
) -> list[list[int]]:
    """Group sequence indices into batches whose padded size ``rows x (fixed_len + widest)`` fits ``budget``.

    ``fixed_len`` is a part every row of the batch shares (the decoder's cached prompt prefix; 0 for the
    encoder, whose rows are padded to the widest row). Sequences are taken in ``order`` of length (stable:
    equal lengths keep their input order), so each batch pads to similar lengths; a sequence that alone is
    over the budget gets a batch of its own. ``budget=None`` limits batches by ``max_rows`` only.

    Examples:
        >>> token_budget_batches([5, 1, 3, 2], 6, max_rows=8)
        [[1, 3], [2], [0]]
        >>> token_budget_batches([5, 1, 3, 3], 6, order="descending")
        [[0], [2, 3], [1]]
        >>> token_budget_batches([3, 1, 2], None, max_rows=2, order="input")
        [[0, 1], [2]]
    """
    seq = list(range(len(lengths)))
    if order != "input":
        sign = -1 if order == "descending" else 1
        seq.sort(key=lambda i: sign * lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in seq:
        w = max(width, lengths[i])
        fits = budget is None or (len(cur) + 1) * (fixed_len + w) <= budget
        if cur and (not fits or (max_rows is not None and len(cur) >= max_rows)):
            batches.append(cur)
            cur, w = [], lengths[i]
        cur.append(i)
        width = w
    if cur:
        batches.append(cur)
    return batches
