"""Cascade reranking: cheap rerankers first, expensive ones only on what can still reach the top."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.base import BaseReranker, check_pairs
from rankfunnel.types import Hit
from rankfunnel.validate import check_count, check_query


@dataclass(frozen=True, slots=True)
class StageStats:
    """Work done by one cascade stage: pairs scored, seconds spent and calls made."""

    name: str
    cutoff: int | None
    pairs: int
    seconds: float
    calls: int
    stopped: int = 0  # queries that stopped after this stage (early stop): later stages did not read them


@dataclass(slots=True)
class _Group:
    """One query's documents while the cascade runs."""

    query: str
    docs: list[str]
    order: np.ndarray  # document indices, best first
    raw: np.ndarray  # raw score of the last stage that scored each document (nan: never scored)
    norm: np.ndarray  # that stage's normalised score
    depth: int = 0  # how many leading entries of ``order`` the previous stage scored
    stopped: bool = False  # an earlier stage was confident: later stages skip this query (early stop)


class CascadeReranker(BaseReranker):
    """Runs rerankers in sequence with shrinking cut-offs: e.g. MiniLM on the top 100, zerank-2 on its top 20.

    Stage ``i`` scores only the top ``cutoff_i`` documents of stage ``i - 1``'s order (stage 0 reads the
    input, i.e. stage-1 retrieval, order). The final order is: the last stage's survivors sorted by its
    scores, then the documents each earlier stage scored but did not pass on, in that stage's order, then
    documents no stage read, in input order. Each stage batches the pairs of all queries into one
    ``predict`` call.

    Raw scores of different models are not comparable, so hits keep the raw score (``rerank_score``) of the
    stage that placed them, and ``score`` is that stage's calibrated score capped by the running minimum down
    the ranking, so scores never increase with rank. Documents no stage read get ``rerank_score=None`` and
    ``score=0``. ``predict``/``score`` return these capped 0-1 scores (``normalise`` is then the identity);
    ``rank`` and ``rerank`` follow the cascade order exactly.

    Early stop: with ``early_stop=m``, a query whose calibrated (0-1) top-1 score of a stage leads its top-2
    by at least ``m`` is not passed to the later, more expensive stages: that stage's order is final for
    it. Fit ``m`` on training queries with :func:`rankfunnel.eval.depth.fit_cascade_stop` (the smallest
    margin whose NDCG loss stays within a bound); in a spec, ``"A:100,B:20,stop=0.3"``.

    Args:
        stages: ``(reranker, cutoff)`` pairs; ``cutoff`` None means all documents the previous stage kept.
            Cut-offs must not grow from one stage to the next.
        name: Reported name; default ``"A:100,B:20"`` built from the stages.
        early_stop: The calibrated top-1 lead after which a query stops early (None: never).

    Examples:
        >>> from rankfunnel.rerank.fake import FakeReranker
        >>> cascade = CascadeReranker([(FakeReranker(name="cheap"), 3), (FakeReranker(name="big"), 1)])
        >>> [i for i, _, _ in cascade.rank("red car", ["blue", "red car", "red", "car red"])]
        [1, 2, 0, 3]
        >>> [(s.name, s.pairs) for s in cascade.stage_stats()]
        [('cheap', 3), ('big', 1)]
    """

    def __init__(self, stages: Sequence[tuple[BaseReranker, int | None]], *, name: str | None = None,
                 early_stop: float | None = None) -> None:
        if early_stop is not None and not (
            isinstance(early_stop, (int, float)) and not isinstance(early_stop, bool) and 0 <= early_stop <= 1
        ):
            raise InvalidInputError(
                f"early_stop must be a calibrated score lead between 0 and 1 (or None), got {early_stop!r}.")
        self.early_stop = None if early_stop is None else float(early_stop)
        if not stages:
            raise InvalidInputError("A cascade needs at least one (reranker, cutoff) stage.")
        prev: int | None = None
        for i, (reranker, cutoff) in enumerate(stages):
            if not hasattr(reranker, "predict"):
                raise InvalidInputError(f"Stage {i} is {reranker!r}, not a reranker.")
            if cutoff is not None:
                if cutoff < 1:
                    raise InvalidInputError(f"Stage {i} cut-off must be >= 1, got {cutoff}.")
                if prev is not None and cutoff > prev:
                    raise InvalidInputError(
                        f"Stage {i} cut-off {cutoff} is larger than the previous stage's {prev}: a stage can "
                        "only read what the previous one kept. Use shrinking cut-offs such as 'A:100,B:20'.")
                prev = cutoff
        self.stages: list[tuple[BaseReranker, int | None]] = list(stages)
        self.name = name or ",".join(f"{r.name}:{c}" if c else r.name for r, c in self.stages) + (
            f",stop={early_stop:g}" if early_stop is not None else "")
        self.calibration = self.stages[-1][0].calibration
        self._lock = threading.Lock()
        self._totals = [[0, 0.0, 0, 0] for _ in self.stages]
        self.last_stats: tuple[StageStats, ...] = ()

    # --- statistics -------------------------------------------------------------------------------------
    def stage_stats(self) -> tuple[StageStats, ...]:
        """Cumulative work per stage since creation or the last :meth:`reset_stats` (for cost reports)."""
        with self._lock:
            return tuple(StageStats(r.name, c, int(t[0]), float(t[1]), int(t[2]), int(t[3]))
                         for (r, c), t in zip(self.stages, self._totals, strict=True))

    def reset_stats(self) -> None:
        """Set the cumulative per-stage counters to zero."""
        with self._lock:
            self._totals = [[0, 0.0, 0, 0] for _ in self.stages]

    # --- the cascade ------------------------------------------------------------------------------------
    def _run(self, groups: list[_Group]) -> None:
        last: list[StageStats] = []
        for s, (reranker, cutoff) in enumerate(self.stages):
            takes: list[np.ndarray] = []
            pairs: list[tuple[str, str]] = []
            for g in groups:
                limit = len(g.order) if s == 0 else g.depth
                if cutoff is not None:
                    limit = min(limit, cutoff)
                if g.stopped:
                    limit = 0
                take = g.order[:limit]
                takes.append(take)
                pairs.extend((g.query, g.docs[i]) for i in take)
            t0 = time.perf_counter()
            raw_all = np.asarray(reranker.predict(pairs) if pairs else np.zeros(0), dtype=np.float32)
            seconds = time.perf_counter() - t0
            if raw_all.shape != (len(pairs),):
                raise InvalidInputError(
                    f"Stage {s} ({reranker.name}) returned {raw_all.shape} scores for {len(pairs)} pairs.")
            norm_all = np.asarray(reranker.normalise(raw_all), dtype=np.float64) if pairs else np.zeros(0)
            start = 0
            for g, take in zip(groups, takes, strict=True):
                raw = raw_all[start:start + len(take)]
                norm = norm_all[start:start + len(take)]
                start += len(take)
                g.raw[take] = raw
                g.norm[take] = norm
                best = take[np.argsort(-raw, kind="stable")]
                g.order = np.concatenate([best, g.order[len(take):]])
                g.depth = len(take)
            stopped = 0
            if self.early_stop is not None and s < len(self.stages) - 1:
                for g in groups:
                    if not g.stopped and g.depth >= 2:
                        lead = g.norm[g.order[0]] - g.norm[g.order[1]]
                        g.stopped = bool(lead >= self.early_stop)
                        stopped += g.stopped
            last.append(StageStats(reranker.name, cutoff, len(pairs), seconds, 1, stopped))
            with self._lock:
                tot = self._totals[s]
                tot[0] += len(pairs)
                tot[1] += seconds
                tot[2] += 1
                tot[3] += stopped
        self.last_stats = tuple(last)

    @staticmethod
    def _capped(g: _Group) -> np.ndarray:
        """Calibrated scores in input order, capped by the running minimum down the cascade order."""
        out = np.zeros(len(g.docs), dtype=np.float64)
        running = np.inf
        for i in g.order:
            s = 0.0 if np.isnan(g.raw[i]) else float(g.norm[i])
            running = min(running, s)
            out[i] = running
        return out

    def _groups(self, queries: Sequence[str], doc_lists: Sequence[Sequence[str]]) -> list[_Group]:
        groups = []
        for q, docs in zip(queries, doc_lists, strict=True):
            n = len(docs)
            groups.append(_Group(q, list(docs), np.arange(n), np.full(n, np.nan, np.float32), np.zeros(n)))
        self._run(groups)
        return groups

    # --- BaseReranker API -------------------------------------------------------------------------------
    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Cascade scores (capped, calibrated, 0-1) for pairs; pairs are grouped by query for the cut-offs."""
        checked = check_pairs(pairs)
        by_query: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(checked):
            by_query.setdefault(q, []).append(i)
        queries = list(by_query)
        groups = self._groups(queries, [[checked[i][1] for i in by_query[q]] for q in queries])
        out = np.zeros(len(checked), dtype=np.float32)
        for q, g in zip(queries, groups, strict=True):
            out[by_query[q]] = self._capped(g)
        return out

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Identity: cascade scores from :meth:`predict` are already calibrated."""
        return np.asarray(raw, dtype=np.float64)

    def rank(self, query: str, docs: Sequence[str], top_n: int | None = None
             ) -> list[tuple[int, float, float]]:
        """``(index, raw, score)`` in cascade order; ``raw`` is the deciding stage's score (nan if unread)."""
        check_query(query)
        if top_n is not None:
            check_count(top_n, field="top_n", maximum=None)
        if not docs:
            return []
        g = self._groups([query], [docs])[0]
        capped = self._capped(g)
        order = g.order if top_n is None else g.order[:top_n]
        return [(int(i), float(g.raw[i]), float(capped[i])) for i in order]

    def rerank_many(self, queries: Sequence[str], hit_lists: Sequence[Sequence[Hit]], top_n: int | None = None
                    ) -> list[list[Hit]]:
        """Rerank several queries' hits through the cascade, each stage batched across all queries."""
        if len(queries) != len(hit_lists):
            raise InvalidInputError(
                f"{len(queries)} queries but {len(hit_lists)} hit lists: pass one list per query.")
        if top_n is not None:
            check_count(top_n, field="top_n", maximum=None)
        doc_lists = []
        for q, hits in zip(queries, hit_lists, strict=True):
            check_query(q)
            for h in hits:
                if h.document is None:
                    raise InvalidInputError(
                        f"Hit {h.id!r} carries no document text; fetch documents before reranking.")
            doc_lists.append([h.document.content for h in hits if h.document is not None])
        groups = self._groups(queries, doc_lists)
        out = []
        for hits, g in zip(hit_lists, groups, strict=True):
            capped = self._capped(g)
            order = g.order if top_n is None else g.order[:top_n]
            out.append([
                replace(hits[i], rank=r + 1, score=float(capped[i]),
                        rerank_score=None if np.isnan(g.raw[i]) else float(g.raw[i]))
                for r, i in enumerate(order)
            ])
        return out
