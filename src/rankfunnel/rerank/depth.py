"""Adaptive rerank depth: per query, skip stage 2 or rerank only the top 10 / 20 / 50 / 100 candidates.

A :class:`DepthPolicy` reads one confidence signal from the stage-1 hits (how far the top-1 score leads,
how peaked the score distribution is) and maps it to a depth through fitted thresholds: the more confident
stage 1 is, the fewer candidates the reranker scores (depth 0 = stage 2 skipped). Thresholds are fitted on
a training split by :func:`rankfunnel.eval.depth.fit_depth_policy` and stored as JSON; :class:`Stage2`
applies a policy for ``rerank="auto"`` (``Stage2(depth=...)``): candidates past the chosen depth keep their
stage-1 order after the reranked ones.

Signals (higher = stage 1 more confident):

- ``gap``: top-1 minus top-2 ``stage1_score`` (the fixed-margin rule of ``rerank="auto"`` uses it too);
- ``gap_z``: the same gap divided by the standard deviation of the top-``SIGNAL_TOP`` scores (scale-free);
- ``peak``: minus the entropy of the softmax of the top-``SIGNAL_TOP`` scores (a peaked distribution);
- ``agree``: hybrid stage 1 only: the fraction of the fused top ``SIGNAL_TOP`` that *every* retriever (dense
  and BM25) ranked in its own top ``SIGNAL_TOP`` (``Hit.stage1_ranks``);
- ``agree_top1``: hybrid only: minus the worst rank any retriever gave the fused top-1 (-1: both ranked it
  first; a retriever that did not return it counts as rank ``MISSING_RANK``).

Without per-retriever ranks (dense or BM25 alone, or Milvus ``hybrid_search``, which fuses inside the server)
the agreement signals are ``-inf``: never confident, so a policy on them reranks at its deepest depth there;
:func:`~rankfunnel.eval.depth.fit_depth_policy` then picks a score signal instead.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.stage2 import AUTO_SKIP_PREFIX
from rankfunnel.types import Hit

log = logging.getLogger(__name__)
_warned_no_ranks: set[str] = set()  # agreement signals already warned about (once per process and signal)

#: Scores the ``gap_z`` and ``peak`` signals look at.
SIGNAL_TOP = 10
#: ``agree_top1``: the rank of a document a retriever did not return (it was not in its top candidates).
MISSING_RANK = 1000
#: The depths a fitted policy chooses among by default (0 = skip stage 2).
DEFAULT_DEPTHS: tuple[int, ...] = (0, 10, 20, 50, 100)


def _top(scores: Sequence[float]) -> np.ndarray:
    return np.asarray(scores[:SIGNAL_TOP], dtype=np.float64)


def _gap(scores: Sequence[float]) -> float:
    return float(scores[0] - scores[1]) if len(scores) > 1 else math.inf


def _gap_z(scores: Sequence[float]) -> float:
    if len(scores) < 2:
        return math.inf
    top = _top(scores)
    sd = float(top.std())
    return _gap(scores) / sd if sd > 0 else 0.0


def _peak(scores: Sequence[float]) -> float:
    if len(scores) < 2:
        return math.inf
    top = _top(scores)
    p = np.exp(top - top.max())
    p /= p.sum()
    return float(np.sum(p * np.log(np.clip(p, 1e-300, None))))  # minus the entropy


def _retrievers(ranks: Sequence[Mapping[str, int] | None]) -> set[str]:
    return {name for r in ranks if r is not None for name in r}


def _agree(ranks: Sequence[Mapping[str, int] | None]) -> float:
    top = list(ranks[:SIGNAL_TOP])
    names = _retrievers(top)
    if not top or any(r is None for r in top) or len(names) < 2:
        return -math.inf
    both = sum(all((r or {}).get(n, MISSING_RANK) <= SIGNAL_TOP for n in names) for r in top)
    return both / len(top)


def _agree_top1(ranks: Sequence[Mapping[str, int] | None]) -> float:
    names = _retrievers(ranks[:SIGNAL_TOP])
    if not ranks or ranks[0] is None or len(names) < 2:
        return -math.inf
    return -float(max(ranks[0].get(n, MISSING_RANK) for n in names))


#: Signals from the stage-1 scores (rank order) ...
SCORE_SIGNALS: dict[str, Callable[[Sequence[float]], float]] = {"gap": _gap, "gap_z": _gap_z, "peak": _peak}
#: ... and from the per-retriever ranks of a hybrid stage 1 (``Hit.stage1_ranks``, rank order).
RANK_SIGNALS: dict[str, Callable[[Sequence[Mapping[str, int] | None]], float]] = {
    "agree": _agree,
    "agree_top1": _agree_top1,
}
SIGNALS: frozenset[str] = frozenset(SCORE_SIGNALS) | frozenset(RANK_SIGNALS)


def signal_value(name: str, hits: Sequence[Hit] | Sequence[float]) -> float:
    """The value of signal ``name`` for stage-1 ``hits`` (rank order, best first).

    Plain scores work for the score signals; the agreement signals need hits (with ``stage1_ranks``) and are
    ``-inf`` without them.

    Examples:
        >>> from rankfunnel.types import Hit
        >>> h = [Hit(id=str(r), rank=r, score=1 / r, stage1_rank=r, stage1_score=1 / r,
        ...          stage1_ranks={"dense": r, "bm25": 3 - r}) for r in (1, 2)]
        >>> signal_value("gap", h), signal_value("agree_top1", h), signal_value("agree", [1.0, 0.5])
        (0.5, -2.0, -inf)
    """
    if name not in SIGNALS:
        raise InvalidInputError(f"unknown depth signal {name!r}; use one of {sorted(SIGNALS)}.")
    found = [h for h in hits if isinstance(h, Hit)]
    if name in SCORE_SIGNALS:
        scores = [h.stage1_score for h in found] if found else [float(x) for x in hits]  # type: ignore[arg-type]
        return SCORE_SIGNALS[name](scores)
    return RANK_SIGNALS[name]([h.stage1_ranks for h in found])


@dataclass(frozen=True, slots=True)
class DepthPolicy:
    """Stage-1 confidence -> rerank depth.

    ``depths`` is increasing; ``thresholds`` (one per depth but the last) is non-increasing. A query gets
    ``depths[j]`` for the first ``j`` whose threshold its signal reaches, else ``depths[-1]``. A threshold of
    ``math.inf`` is never reached (that depth is unused). Depth 0 skips stage 2.

    Examples:
        >>> from rankfunnel.types import Hit
        >>> hits = lambda *s: [Hit(id=str(r), rank=r, score=x, stage1_rank=r, stage1_score=x)
        ...                    for r, x in enumerate(s, 1)]
        >>> p = DepthPolicy("gap", (0.5, 0.1), (0, 10, 100))
        >>> p.choose(hits(0.9, 0.2)), p.choose(hits(0.9, 0.7)), p.choose(hits(0.9, 0.85))
        (0, 10, 100)
    """

    signal: str
    thresholds: tuple[float, ...]
    depths: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise InvalidInputError(f"unknown depth signal {self.signal!r}; use one of {sorted(SIGNALS)}.")
        d, t = list(self.depths), list(self.thresholds)
        if not d or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in d) or d != sorted(set(d)):
            raise InvalidInputError(f"depths must be increasing integers >= 0, got {self.depths!r}.")
        if d[-1] < 1:
            raise InvalidInputError("the last depth (used when stage 1 is not confident) must be >= 1.")
        if len(t) != len(d) - 1:
            raise InvalidInputError(
                f"a depth policy needs one threshold per depth but the last: {len(d)} depths, {len(t)} thresholds."
            )
        if any(not isinstance(x, (int, float)) or math.isnan(x) for x in t) or t != sorted(t, reverse=True):
            raise InvalidInputError(f"thresholds must be non-increasing numbers, got {self.thresholds!r}.")

    def choose(self, candidates: Sequence[Hit]) -> int:
        """The depth for these stage-1 hits (rank order)."""
        if (
            self.signal in RANK_SIGNALS
            and candidates
            and candidates[0].stage1_ranks is None
            and self.signal not in _warned_no_ranks
        ):
            _warned_no_ranks.add(self.signal)
            log.warning(
                "depth policy signal %r needs hybrid stage-1 hits with per-retriever ranks; these have none "
                "(a single retriever, or Milvus hybrid_search), so every query is reranked at depth %d. Search "
                "with retriever='hybrid' on the faiss or memory backend, or fit the policy on a score signal.",
                self.signal,
                self.depths[-1],
            )
        value = signal_value(self.signal, candidates)
        for threshold, depth in zip(self.thresholds, self.depths, strict=False):
            if value >= threshold:
                return depth
        return self.depths[-1]

    def __call__(self, query: str, candidates: Sequence[Hit]) -> str | None:
        """As a skip policy (``rerank="auto"``): a reason when the chosen depth is 0."""
        if self.choose(candidates) == 0:
            value = signal_value(self.signal, candidates)
            return (
                f"{AUTO_SKIP_PREFIX} depth policy skipped stage 2 (stage-1 {self.signal}={value:.4g} >= "
                f"{self.thresholds[0]:.4g})"
            )
        return None

    # -- JSON ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "rankfunnel.depth_policy",
            "signal": self.signal,
            "depths": list(self.depths),
            "thresholds": [None if math.isinf(t) else float(t) for t in self.thresholds],  # None: never
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DepthPolicy:
        if not isinstance(data, Mapping) or data.get("kind") != "rankfunnel.depth_policy":
            raise InvalidInputError(
                "not a depth policy (expected a JSON object with kind 'rankfunnel.depth_policy'); "
                "write one with fit_depth_policy(...).save(path)."
            )
        try:
            thresholds = tuple(math.inf if t is None else float(t) for t in data["thresholds"])
            return cls(str(data["signal"]), thresholds, tuple(data["depths"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"malformed depth policy ({type(exc).__name__}: {exc}).") from exc

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON (atomically: a temporary file renamed into place)."""
        dest = Path(path)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(dest)
        return dest

    @classmethod
    def load(cls, path: str | Path) -> DepthPolicy:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InvalidInputError(f"depth policy file {p} not found; fit one first.") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"cannot read depth policy {p} ({exc}); it must be JSON.") from exc
        return cls.from_dict(data)
