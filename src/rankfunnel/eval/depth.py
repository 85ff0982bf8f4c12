"""Fit and judge an adaptive-depth policy (:class:`~rankfunnel.rerank.depth.DepthPolicy`) offline.

Inputs are per query: the stage-1 hits (rank order) and the reranker's raw scores of all of them (scored
once, at full depth). Reranking at depth ``d`` is then simulated exactly: the top ``d`` hits reordered by
their reranker scores, the rest after them in stage-1 order (what :class:`~rankfunnel.rerank.stage2.Stage2`
returns for a policy's depth). :func:`fit_depth_policy` chooses thresholds on a *training* split;
:func:`depth_curve` judges policy and fixed depths on another split, with the paired 95% interval of the
NDCG@10 loss against the deepest fixed depth (:func:`rankfunnel.eval.stats.paired_lift`).

The threshold search is exhaustive over a quantile grid (hand-written: a few lines of numpy; the search
space is small and no optimiser handles the "fewest pairs subject to a loss bound" objective better).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError
from rankfunnel.eval.metrics import ndcg_at_k
from rankfunnel.eval.stats import paired_lift
from rankfunnel.rerank.depth import DEFAULT_DEPTHS, SIGNALS, DepthPolicy, signal_value
from rankfunnel.types import Hit

Qrels = Mapping[str, Mapping[str, int]]


def rerank_at_depth(hits: Sequence[Hit], scores: Sequence[float], depth: int) -> list[str]:
    """Document ids after reranking the top ``depth`` hits by ``scores`` (stable), the rest in stage-1 order.

    Examples:
        >>> from rankfunnel.types import Hit
        >>> hs = [Hit(id=c, rank=r, score=0, stage1_rank=r, stage1_score=0) for r, c in enumerate("abc", 1)]
        >>> rerank_at_depth(hs, [0.1, 0.9, 5.0], 2), rerank_at_depth(hs, [0.1, 0.9, 5.0], 0)
        (['b', 'a', 'c'], ['a', 'b', 'c'])
    """
    ids = [h.id for h in hits]
    d = min(max(depth, 0), len(ids))
    head = np.asarray(scores[:d], dtype=np.float64)
    order = np.argsort(-head, kind="stable")
    return [ids[j] for j in order] + ids[d:]


def full_depth_scores(
    reranker: Any,
    queries: Mapping[str, str],
    candidates: Mapping[str, Sequence[Hit]],
    *,
    batch_queries: int = 8,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Raw reranker scores of every candidate (``reranker.predict`` on (query, document text) pairs).

    Several queries' pairs go into one ``predict`` call (``batch_queries``); a progress bar counts pairs.
    """
    from rankfunnel.progress import progress

    out: dict[str, np.ndarray] = {}
    qids = list(candidates)
    total = sum(len(candidates[q]) for q in qids)
    with progress("reranker: scoring every candidate", total, enabled=show_progress) as bar:
        for start in range(0, len(qids), max(1, batch_queries)):
            group = qids[start : start + max(1, batch_queries)]
            pairs = [(queries[q], h.document.content if h.document is not None else "")
                     for q in group for h in candidates[q]]
            raw = np.asarray(reranker.predict(pairs), dtype=np.float64) if pairs else np.zeros(0)
            at = 0
            for q in group:
                n = len(candidates[q])
                out[q] = raw[at : at + n]
                at += n
            bar.advance(len(pairs))
    return out


@dataclass(frozen=True, slots=True)
class _Table:
    qids: list[str]
    depths: tuple[int, ...]
    ndcg: np.ndarray  # (queries, depths)
    pairs: np.ndarray  # (queries, depths)


def _table(
    candidates: Mapping[str, Sequence[Hit]],
    qrels: Qrels,
    scores: Mapping[str, Sequence[float]],
    depths: Sequence[int],
    k: int,
) -> _Table:
    qids = sorted(q for q in candidates if q in qrels and q in scores)
    if not qids:
        raise InvalidInputError("no query has candidates, qrels and reranker scores together; nothing to fit.")
    nd = np.zeros((len(qids), len(depths)))
    pr = np.zeros((len(qids), len(depths)))
    for i, q in enumerate(qids):
        hits, sc = candidates[q], scores[q]
        if len(sc) != len(hits):
            raise InvalidInputError(f"query {q!r}: {len(sc)} reranker scores for {len(hits)} candidates.")
        for j, d in enumerate(depths):
            nd[i, j] = ndcg_at_k(qrels[q], rerank_at_depth(hits, sc, d), k)
            pr[i, j] = min(d, len(hits))
    return _Table(qids, tuple(depths), nd, pr)


def _check_depths(depths: Sequence[int]) -> tuple[int, ...]:
    d = tuple(depths)
    if len(d) < 2 or list(d) != sorted(set(d)) or d[0] < 0 or d[-1] < 1:
        raise InvalidInputError(f"depths must be at least two increasing integers >= 0, got {depths!r}.")
    return d


def fit_depth_policy(
    candidates: Mapping[str, Sequence[Hit]],
    qrels: Qrels,
    scores: Mapping[str, Sequence[float]] | Callable[[str, Sequence[Hit]], Sequence[float]],
    *,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    max_loss: float = 0.005,
    signals: Sequence[str] | None = None,
    k: int = 10,
    grid: int = 20,
) -> DepthPolicy:
    """Thresholds that score the fewest pairs with a mean NDCG@k loss of at most ``max_loss`` (training queries).

    The loss is measured against reranking every query at the deepest depth. Each signal is tried
    (``signals``, default all) with thresholds from a ``grid``-quantile grid of its training values; the
    policy with the fewest pairs wins (ties: the smaller loss). Reranking everything at full depth is always
    feasible, so a policy is always returned.

    Args:
        candidates: Stage-1 hits per query id (rank order).
        qrels: Relevance judgements per query id.
        scores: Reranker raw scores of all candidates per query id, or a callable ``(qid, hits) -> scores``.
        depths: Increasing depths to choose among (0 = skip stage 2).
        max_loss: The NDCG@k loss bound on the training queries.
    """
    d = _check_depths(depths)
    if not (isinstance(max_loss, (int, float)) and math.isfinite(max_loss) and max_loss >= 0):
        raise InvalidInputError(f"max_loss must be a finite number >= 0, got {max_loss!r}.")
    if callable(scores):
        scores = {q: scores(q, hits) for q, hits in candidates.items() if q in qrels}
    table = _table(candidates, qrels, scores, d, k)
    full = table.ndcg[:, -1]
    m = len(d) - 1
    rows = np.arange(len(table.qids))
    best: tuple[float, float, DepthPolicy] | None = None
    for name in signals if signals is not None else sorted(SIGNALS):
        s = np.array([signal_value(name, candidates[q]) for q in table.qids])
        finite = s[np.isfinite(s)]
        grid_t = np.unique(np.quantile(finite, np.linspace(0, 1, grid + 1))) if finite.size else np.zeros(0)
        cands = [math.inf, *sorted(grid_t.tolist(), reverse=True)]  # inf: a depth never used
        ge = {t: s >= t for t in cands}
        for combo in itertools.combinations_with_replacement(range(len(cands)), m):
            ts = [cands[c] for c in combo]  # non-increasing: cands is descending
            level = m - np.sum([ge[t] for t in ts], axis=0)
            loss = float(np.mean(full - table.ndcg[rows, level]))
            if loss > max_loss + 1e-12:
                continue
            pairs = float(np.mean(table.pairs[rows, level]))
            if best is None or (pairs, loss) < (best[0], best[1]):
                best = (pairs, loss, DepthPolicy(name, tuple(ts), d))
    assert best is not None  # all-inf thresholds (full depth) have zero loss
    return best[2]


def _policy_point(policy: DepthPolicy, candidates: Mapping[str, Sequence[Hit]], qrels: Qrels,
                  scores: Mapping[str, Sequence[float]], qids: list[str], k: int) -> tuple[dict[str, float], float]:
    nd: dict[str, float] = {}
    pairs = 0.0
    for q in qids:
        depth = policy.choose(candidates[q])
        nd[q] = ndcg_at_k(qrels[q], rerank_at_depth(candidates[q], scores[q], depth), k)
        pairs += min(depth, len(candidates[q]))
    return nd, pairs / len(qids)


def depth_curve(
    candidates: Mapping[str, Sequence[Hit]],
    qrels: Qrels,
    scores: Mapping[str, Sequence[float]],
    *,
    policy: DepthPolicy | None = None,
    depths: Sequence[int] = (0, 10, 20, 50, 100),
    k: int = 10,
    n_resamples: int = 10_000,
) -> dict[str, Any]:
    """NDCG@k and mean pairs scored per query for fixed depths and the policy, on these (held-out) queries.

    Each point has its loss against the deepest fixed depth (``loss`` = reference - point, positive = worse)
    with the paired 95% bootstrap interval and p-value.
    """
    d = _check_depths(depths)
    table = _table(candidates, qrels, scores, d, k)
    ref = {q: float(v) for q, v in zip(table.qids, table.ndcg[:, -1], strict=True)}

    def point(label: str, nd: Mapping[str, float], pairs: float) -> dict[str, Any]:
        lift = paired_lift(ref, nd, metric=f"ndcg@{k}", n_resamples=n_resamples)
        return {
            "label": label,
            f"ndcg@{k}": lift.after,
            "pairs_per_query": pairs,
            "loss": -lift.delta + 0.0,  # + 0.0: no "-0.0"
            "loss_ci95": [-lift.ci_high + 0.0, -lift.ci_low + 0.0],
            "p_value": lift.p_value,
        }

    points = []
    for j, depth in enumerate(d):
        nd = {q: float(v) for q, v in zip(table.qids, table.ndcg[:, j], strict=True)}
        label = "stage 1" if depth == 0 else f"top {depth}"
        points.append(point(label, nd, float(table.pairs[:, j].mean())))
    out: dict[str, Any] = {"queries": len(table.qids), "reference": f"top {d[-1]}", "fixed": points}
    if policy is not None:
        nd, pairs = _policy_point(policy, candidates, qrels, scores, table.qids, k)
        out["policy"] = {**point("policy", nd, pairs), "policy": policy.to_dict()}
        full_pairs = float(table.pairs[:, -1].mean())
        out["policy"]["pairs_saved"] = 1 - pairs / full_pairs if full_pairs else 0.0
    return out


def plot_curve(curve: Mapping[str, Any], path: Any, *, k: int = 10) -> None:
    """NDCG@k against pairs scored per query: fixed depths as a line, the policy as a point (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"ndcg@{k}"
    fig, ax = plt.subplots(figsize=(6, 4))
    fixed = curve["fixed"]
    ax.plot([p["pairs_per_query"] for p in fixed], [p[key] for p in fixed], "o-", label="fixed depth")
    for p in fixed:
        ax.annotate(p["label"], (p["pairs_per_query"], p[key]), fontsize=8)
    if "policy" in curve:
        p = curve["policy"]
        ax.plot([p["pairs_per_query"]], [p[key]], "r*", markersize=12, label="adaptive depth policy")
    if "dataset" in curve:
        ax.set_title(f"{curve['dataset']} ({curve.get('judged_on', '')}, {curve['queries']} queries)", fontsize=9)
    ax.set_xlabel("reranker pairs scored per query")
    ax.set_ylabel(key.upper())
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- early stop inside a cascade ------------------------------------------------------------------------------
def cascade_order(
    hits: Sequence[Hit],
    stage_scores: Sequence[tuple[Sequence[float], Sequence[float]]],
    cutoffs: Sequence[int | None],
    early_stop: float | None,
) -> tuple[list[str], int]:
    """Ids in the order a :class:`~rankfunnel.rerank.cascade.CascadeReranker` returns them, and pairs scored.

    ``stage_scores[i]`` is stage ``i``'s (raw, calibrated) scores of *every* hit (scored once offline); the
    cascade's cut-offs and early stop are then replayed exactly as ``CascadeReranker`` applies them.
    """
    ids = [h.id for h in hits]
    order = list(range(len(ids)))
    depth, pairs = len(ids), 0
    for s, ((raw, norm), cutoff) in enumerate(zip(stage_scores, cutoffs, strict=True)):
        limit = depth if cutoff is None else min(depth, cutoff)
        take = order[:limit]
        pairs += len(take)
        best = sorted(take, key=lambda i: -float(raw[i]))  # stable: ties keep the previous order
        order = best + order[limit:]
        depth = len(take)
        lead = float(norm[order[0]]) - float(norm[order[1]]) if depth >= 2 else -math.inf
        confident = early_stop is not None and lead >= early_stop
        if confident and s < len(stage_scores) - 1:
            break
    return [ids[i] for i in order], pairs


def fit_cascade_stop(
    candidates: Mapping[str, Sequence[Hit]],
    qrels: Qrels,
    stage_scores: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
    cutoffs: Sequence[int | None],
    *,
    max_loss: float = 0.005,
    k: int = 10,
    grid: int = 40,
) -> dict[str, Any]:
    """The smallest early-stop margin whose mean NDCG@k loss against the full cascade is at most ``max_loss``.

    Margins are tried from a ``grid``-quantile grid of the first stage's calibrated top-1 leads on these
    (training) queries; ``None`` (never stop) always qualifies. Returns the margin and, for it, the mean pairs
    scored, the loss and the share of queries stopped early.
    """
    if not (isinstance(max_loss, (int, float)) and math.isfinite(max_loss) and max_loss >= 0):
        raise InvalidInputError(f"max_loss must be a finite number >= 0, got {max_loss!r}.")
    qids = sorted(q for q in candidates if q in qrels and q in stage_scores)
    if not qids:
        raise InvalidInputError("no query has candidates, qrels and stage scores together; nothing to fit.")

    def run(margin: float | None) -> tuple[float, float]:
        nd = pairs = 0.0
        for q in qids:
            ids, n = cascade_order(candidates[q], stage_scores[q], cutoffs, margin)
            nd += ndcg_at_k(qrels[q], ids, k)
            pairs += n
        return nd / len(qids), pairs / len(qids)

    full_ndcg, full_pairs = run(None)
    leads = []
    for q in qids:
        raw, norm = stage_scores[q][0]
        head = sorted(range(min(len(raw), cutoffs[0] or len(raw))), key=lambda i: -float(raw[i]))[:2]
        if len(head) == 2:
            leads.append(float(norm[head[0]]) - float(norm[head[1]]))
    best: dict[str, Any] = {"early_stop": None, "pairs_per_query": full_pairs, "loss": 0.0,
                            "full_pairs_per_query": full_pairs, f"full_ndcg@{k}": full_ndcg}
    for margin in sorted(set(np.quantile(leads, np.linspace(0, 1, grid + 1)).tolist())) if leads else []:
        ndcg, pairs = run(margin)
        if full_ndcg - ndcg <= max_loss + 1e-12 and pairs < best["pairs_per_query"]:
            best = {**best, "early_stop": float(margin), "pairs_per_query": pairs, "loss": full_ndcg - ndcg}
            break  # margins ascend: the first that qualifies stops the most queries
    return best
