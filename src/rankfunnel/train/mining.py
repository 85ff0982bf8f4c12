"""Hard-negative mining with the project's own stage 1 (dense and BM25 searches of a collection).

A hard negative is a document that stage 1 ranks high for a query but that is not judged relevant. Two
guards keep false negatives (relevant but unjudged documents, frequent in sparse qrels such as SciFact's)
out of the negatives: the ``skip_top`` best-ranked candidates of each retriever are dropped, and so is any
candidate that scores within ``relative_margin`` of the query's best positive in the same ranked list
(sentence-transformers' ``mine_hard_negatives`` uses the same relative-margin rule).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rankfunnel.errors import InvalidInputError
from rankfunnel.progress import progress, track
from rankfunnel.types import RETRIEVERS, Hit
from rankfunnel.validate import check_retriever


@dataclass(frozen=True, slots=True, kw_only=True)
class MiningConfig:
    """How negatives are drawn from stage-1 candidates.

    Attributes:
        retrievers: Stage-1 retrievers to mine from (``dense``, ``bm25``, ``hybrid``); their lists are merged.
        depth: Candidates fetched per retriever and query.
        negatives: Negatives kept per query (sampled from the filtered pool, seeded).
        skip_top: Best-ranked candidates of each list that are never used (false-negative guard).
        relative_margin: A candidate scoring above ``(1 - margin) * best positive score`` in the same list is
            dropped as a likely unjudged positive; ``0`` disables the rule.
    """

    retrievers: tuple[str, ...] = ("dense", "bm25")
    depth: int = 30
    negatives: int = 7
    skip_top: int = 0
    relative_margin: float = 0.05

    def __post_init__(self) -> None:
        if not self.retrievers:
            raise InvalidInputError(f"retrievers is empty; use some of {', '.join(RETRIEVERS)}.")
        for r in self.retrievers:
            check_retriever(r)
        if self.depth < 1 or self.negatives < 1:
            raise InvalidInputError(
                f"depth and negatives must be >= 1, got {self.depth} and {self.negatives}."
            )
        if self.skip_top < 0 or self.skip_top >= self.depth:
            raise InvalidInputError(
                f"skip_top must be in [0, depth), got {self.skip_top} with depth {self.depth}."
            )
        if not 0.0 <= self.relative_margin < 1.0:
            raise InvalidInputError(f"relative_margin must be in [0, 1), got {self.relative_margin}.")


def search_lists(
    stage1: Any,
    queries: Sequence[str],
    *,
    k: int,
    retriever: str,
    show_progress: bool = False,
    desc: str = "stage 1",
) -> list[list[Hit]]:
    """Ranked hits for each query, through ``search_many`` when the collection has it (batched embedding)."""
    if hasattr(stage1, "search_many"):
        out: list[list[Hit]] = []
        step = 64
        with progress(f"{desc} ({retriever})", len(queries), enabled=show_progress, transient=False) as bar:
            for i in range(0, len(queries), step):
                chunk = list(queries[i : i + step])
                out.extend(stage1.search_many(chunk, k=k, retriever=retriever))
                bar.advance(len(chunk))
        return out
    it = track(queries, f"{desc} ({retriever})", enabled=show_progress, transient=False)
    return [stage1.search(q, k=k, retriever=retriever) for q in it]


def filter_candidates(hits: Sequence[Hit], judged_relevant: set[str], config: MiningConfig) -> list[str]:
    """Ids of the hits usable as negatives, in rank order (the rules of :class:`MiningConfig`)."""
    pos_scores = [h.stage1_score for h in hits if h.id in judged_relevant]
    ceiling = None
    if pos_scores and config.relative_margin > 0 and max(pos_scores) > 0:
        ceiling = (1.0 - config.relative_margin) * max(pos_scores)
    out = []
    for rank, h in enumerate(hits):
        if rank < config.skip_top or h.id in judged_relevant:
            continue
        if ceiling is not None and h.stage1_score > ceiling:
            continue
        out.append(h.id)
    return out


def mine_hard_negatives(
    stage1: Any,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    config: MiningConfig = MiningConfig(),
    *,
    seed: int = 0,
    show_progress: bool = False,
) -> dict[str, list[str]]:
    """Mine hard negatives for each query from stage-1 searches of a collection.

    Args:
        stage1: A :class:`rankfunnel.protocols.Collection` (``search``; ``search_many`` used when present).
        queries: Query id -> query text.
        qrels: Query id -> {doc id -> grade}; every doc with grade > 0 is excluded from the negatives.
        config: Retrievers, depth, count and false-negative guards.
        seed: Seed of the sampling among the filtered candidates.
        show_progress: Show a progress bar per retriever.

    Returns:
        Query id -> negative doc ids (at most ``config.negatives``; fewer when the pool is small).

    Examples:
        >>> negs = mine_hard_negatives(collection, {"q1": "red car"}, {"q1": {"d1": 1}})  # doctest: +SKIP
    """
    qids = sorted(queries)
    pools: dict[str, list[str]] = {q: [] for q in qids}
    ranked = {
        r: search_lists(
            stage1,
            [queries[q] for q in qids],
            k=config.depth,
            retriever=r,
            show_progress=show_progress,
            desc="mining negatives",
        )
        for r in config.retrievers
    }
    for i, qid in enumerate(qids):
        relevant = {d for d, g in qrels.get(qid, {}).items() if g > 0}
        lists = [filter_candidates(ranked[r][i], relevant, config) for r in config.retrievers]
        merged: dict[str, None] = {}
        for j in range(max((len(x) for x in lists), default=0)):  # interleave the retrievers rank by rank
            for lst in lists:
                if j < len(lst):
                    merged.setdefault(lst[j], None)
        pools[qid] = list(merged)
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for qid in qids:
        pool = pools[qid]
        out[qid] = (
            pool
            if len(pool) <= config.negatives
            else sorted(rng.sample(pool, config.negatives), key=pool.index)
        )
    return out
