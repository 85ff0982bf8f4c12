"""Sweep the hybrid fusion weight (``rankfunnel eval --sweep-fusion``) with :mod:`rankfunnel.fusion`.

Dense and BM25 candidates are retrieved once per query (``candidates * top_k`` deep, as the collection's
hybrid retriever does), then fused offline for every method and weight, so a sweep costs two retrievals
per query. Weights are tuned on a tuning split: ``dev`` (or ``train``) when the dataset has one besides the
evaluated split, else a fixed half of the evaluated queries (chosen by a hash of the query id), and the
chosen weight is then scored on the other half only, so the reported figure is never tuned on itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from rankfunnel.eval.datasets import BeirDataset, available_splits, load_beir
from rankfunnel.eval.metrics import evaluate, exclude_self
from rankfunnel.fusion import FusionConfig

WEIGHTS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
METHODS: tuple[str, ...] = ("rrf", "minmax", "zscore")
Run = dict[str, dict[str, float]]


def _half(qid: str) -> bool:
    return hashlib.sha1(qid.encode("utf-8")).digest()[0] % 2 == 0


def tuning_split(ds: BeirDataset) -> tuple[BeirDataset, BeirDataset, str]:
    """``(tune, report, description)``: another split when there is one, else a hashed half of the queries."""
    for other in ("dev", "train"):
        if other != ds.split and other in available_splits(ds.path):
            tune = load_beir(ds.path, other)
            if tune.queries:
                return tune, ds, f"tuned on the {other} split ({len(tune.queries)} queries)"
    qids = sorted(ds.queries)
    a = [q for q in qids if _half(q)]
    b = [q for q in qids if not _half(q)]
    return (
        ds.subset(a),
        ds.subset(b),
        f"no dev split: tuned on a hashed half of the {ds.split} queries ({len(a)}), reported on the other "
        f"half ({len(b)})",
    )


def retrieve_runs(
    ds: BeirDataset, collection: Any, depth: int, *, batch_size: int = 64, show_progress: bool = True
) -> tuple[Run, Run]:
    """Dense and BM25 runs of every query of ``ds``, ``depth`` deep (the query's own document removed)."""
    from rankfunnel.progress import progress

    qids = sorted(ds.queries)
    runs: dict[str, Run] = {"dense": {}, "bm25": {}}
    with progress(f"{ds.name}: dense + bm25 for the sweep", 2 * len(qids), enabled=show_progress) as bar:
        for retriever in ("dense", "bm25"):
            for i in range(0, len(qids), batch_size):
                chunk = qids[i : i + batch_size]
                hits = collection.search_many([ds.queries[q] for q in chunk], k=depth, retriever=retriever)
                for q, hs in zip(chunk, hits, strict=True):
                    runs[retriever][q] = {h.id: float(h.stage1_score) for h in hs}
                bar.advance(len(chunk))
    if ds.self_ids:
        return exclude_self(runs["dense"], ds.self_ids), exclude_self(runs["bm25"], ds.self_ids)
    return runs["dense"], runs["bm25"]


def fuse_runs(
    dense: Mapping[str, Mapping[str, float]],
    bm25: Mapping[str, Mapping[str, float]],
    config: FusionConfig,
    k: int,
) -> Run:
    """Fuse two runs query by query with ``config`` and keep the top ``k``."""
    out: Run = {}
    for q in set(dense) | set(bm25):
        d = sorted(dense.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        b = sorted(bm25.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        out[q] = dict(config.fuse(d, b)[:k])
    return out


def _cut(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    return {q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]) for q, docs in run.items()}


def _single(
    qrels: Mapping[str, Mapping[str, int]], dense: Run, bm25: Run, k: int, metric: str
) -> dict[str, float]:
    return {
        name: evaluate(qrels, _cut({q: run[q] for q in qrels if q in run}, k), [metric]).mean[metric]
        for name, run in (("dense", dense), ("bm25", bm25))
    }


def config_for(method: str, w: float) -> FusionConfig:
    """The fusion config of dense weight ``w`` (BM25 gets ``1 - w``)."""
    return FusionConfig(method=method, dense_weight=w, bm25_weight=round(1.0 - w, 10))


def sweep_curves(
    qrels: Mapping[str, Mapping[str, int]],
    dense: Run,
    bm25: Run,
    *,
    top_k: int = 100,
    metric: str = "ndcg@10",
    methods: Sequence[str] = METHODS,
    weights: Sequence[float] = WEIGHTS,
) -> dict[str, dict[float, float]]:
    """``{method: {dense_weight: mean metric}}`` over the queries of ``qrels``."""
    keep = set(qrels)
    d = {q: v for q, v in dense.items() if q in keep}
    b = {q: v for q, v in bm25.items() if q in keep}
    return {
        m: {
            w: evaluate(qrels, fuse_runs(d, b, config_for(m, w), top_k), [metric]).mean[metric]
            for w in weights
        }
        for m in methods
    }


def sweep_fusion(
    ds: BeirDataset,
    collection: Any,
    *,
    top_k: int = 100,
    candidates: int = 3,
    metric: str = "ndcg@10",
    show_progress: bool = True,
    runs: tuple[Run, Run] | None = None,
) -> dict[str, Any]:
    """Tune the hybrid weight on a tuning part of ``ds`` and report every method/weight on the rest.

    Returns:
        A JSON-ready dict: how it was tuned, the single retrievers' scores on the report queries, the curves
        (``{method: {weight: score}}``) on tuning and report queries, and the tuned choice. ``runs``
        (dense, bm25), when given, are reused instead of retrieving the evaluated split again.

    Examples:
        >>> sweep_fusion(load_beir("../shared/datasets/scifact"), col)["best"]  # doctest: +SKIP
        {'method': 'minmax', 'dense_weight': 0.6, 'tuned': 0.70, 'reported': 0.69}
    """
    tune, report, how = tuning_split(ds)
    same = tune.path == report.path and tune.split == report.split
    depth = candidates * top_k
    if same:
        dense, bm25 = runs or retrieve_runs(ds, collection, depth, show_progress=show_progress)
        t_dense, t_bm25 = dense, bm25
    else:
        dense, bm25 = retrieve_runs(report, collection, depth, show_progress=show_progress)
        t_dense, t_bm25 = retrieve_runs(tune, collection, depth, show_progress=show_progress)
    tuned = sweep_curves(tune.qrels, t_dense, t_bm25, top_k=top_k, metric=metric)
    reported = sweep_curves(report.qrels, dense, bm25, top_k=top_k, metric=metric)
    m, w = max(
        ((m, w) for m in tuned for w in tuned[m]), key=lambda mw: (tuned[mw[0]][mw[1]], -abs(mw[1] - 0.5))
    )
    single = _single(report.qrels, dense, bm25, top_k, metric)
    single_tuned = _single(tune.qrels, t_dense, t_bm25, top_k, metric)
    return {
        "dataset": ds.name,
        "tuning": how,
        "metric": metric,
        "report_queries": len(report.qrels),
        "single": single,
        "single_tuned": single_tuned,
        "tuned_curves": tuned,
        "report_curves": reported,
        "best": {"method": m, "dense_weight": w, "tuned": tuned[m][w], "reported": reported[m][w]},
    }


def choose_default(
    report_curves: Mapping[str, Mapping[str, Mapping[float, float]]],
    single: Mapping[str, Mapping[str, float]],
    *,
    tolerance: float = 0.01,
) -> dict[str, Any]:
    """Pick one fusion setting for every dataset: safe first, then best on average.

    For every (method, weight) the shortfall on a dataset is ``best single retriever - fused``. Among the
    settings whose largest shortfall is within ``tolerance`` the one with the highest mean score wins; if no
    setting is that safe, the one with the smallest largest shortfall (then: the best mean). ``ok`` says
    whether the choice is within ``tolerance`` everywhere.
    """
    names = list(report_curves)
    options = [
        (m, w) for m in next(iter(report_curves.values())) for w in next(iter(report_curves.values()))[m]
    ]
    scored = []
    for m, w in options:
        shortfalls = {n: max(single[n].values()) - report_curves[n][m][w] for n in names}
        mean = sum(report_curves[n][m][w] for n in names) / len(names)
        scored.append((max(shortfalls.values()), -mean, m, w, shortfalls))
    safe = [t for t in scored if t[0] <= tolerance]
    if safe:  # among settings that never fall more than ``tolerance`` short, the best on average
        worst, neg_mean, m, w, shortfalls = min(safe, key=lambda t: (t[1], t[0]))
    else:
        worst, neg_mean, m, w, shortfalls = min(scored, key=lambda t: (t[0], t[1]))
    return {
        "method": m,
        "dense_weight": w,
        "worst_shortfall": worst,
        "mean": -neg_mean,
        "shortfalls": shortfalls,
        "ok": worst <= tolerance,
    }
