"""Paired significance for a lift: bootstrap confidence interval and a randomisation (sign-flip) test.

Hand-written on numpy (a few lines) rather than pulling in ranx's numba-compiled tests, so that the lift,
its interval and its p-value are computed from the same per-query deltas and a fixed seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError


@dataclass(frozen=True, slots=True, kw_only=True)
class Lift:
    """Mean paired difference ``after - before`` over queries, with a 95% bootstrap interval."""

    metric: str
    before: float
    after: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    helped: int
    hurt: int
    unchanged: int
    queries: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "before": self.before,
            "after": self.after,
            "delta": self.delta,
            "ci95": [self.ci_low, self.ci_high],
            "p_value": self.p_value,
            "helped": self.helped,
            "hurt": self.hurt,
            "unchanged": self.unchanged,
            "queries": self.queries,
        }


def paired_lift(
    before: Mapping[str, float],
    after: Mapping[str, float],
    *,
    metric: str = "ndcg@10",
    n_resamples: int = 10_000,
    seed: int = 0,
    tol: float = 1e-12,
) -> Lift:
    """Lift of ``after`` over ``before`` on the queries both cover.

    The 95% interval is the percentile interval of the mean delta over ``n_resamples`` bootstrap samples
    of queries (paired: a query's before and after values are drawn together). The p-value is a two-sided
    paired randomisation test (random sign flips of the deltas), so a zero lift gives p close to 1.

    Examples:
        >>> lift = paired_lift({"a": 0.2, "b": 0.5}, {"a": 0.4, "b": 0.5})
        >>> round(lift.delta, 3), lift.helped, lift.unchanged
        (0.1, 1, 1)
    """
    qids = sorted(set(before) & set(after))
    if not qids:
        raise InvalidInputError(
            "No query is shared by both runs: a lift needs per-query values of the same queries."
        )
    if n_resamples < 1:
        raise InvalidInputError(f"n_resamples must be >= 1, got {n_resamples}.")
    b = np.array([before[q] for q in qids], dtype=np.float64)
    a = np.array([after[q] for q in qids], dtype=np.float64)
    d = a - b
    rng = np.random.default_rng(seed)
    n = len(d)
    idx = rng.integers(0, n, size=(n_resamples, n))
    boot = d[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, n))
    observed = abs(d.mean())
    flipped = np.abs((signs * d).mean(axis=1))
    p = (1 + int(np.sum(flipped >= observed - tol))) / (n_resamples + 1)
    return Lift(
        metric=metric,
        before=float(b.mean()),
        after=float(a.mean()),
        delta=float(d.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(p),
        helped=int(np.sum(d > tol)),
        hurt=int(np.sum(d < -tol)),
        unchanged=int(np.sum(np.abs(d) <= tol)),
        queries=n,
    )
