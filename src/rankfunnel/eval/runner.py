"""Run a BEIR dataset through stage 1 and reranking and measure quality, lift and latency.

The index of each dataset is built once and cached under ``<cache_dir>/<dataset>-<embedder>`` (git-ignored
``.cache/indexes`` by default); a ``.complete.json`` marker beside it records the corpus size, so an
interrupted build is resumed and a finished one is reused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel import defaults
from rankfunnel.errors import InvalidInputError
from rankfunnel.eval.datasets import BeirDataset
from rankfunnel.eval.metrics import DEFAULT_KS, EvalResult, evaluate, exclude_self, metric_names, ranked_ids
from rankfunnel.eval.stats import Lift, paired_lift
from rankfunnel.rerank.stage2 import AUTO_SKIP_PREFIX
from rankfunnel.types import SearchResult
from rankfunnel.validate import check_retriever

DEFAULT_CACHE = Path(".cache/indexes")
LIFT_METRICS = ("ndcg@10", "mrr@10", "recall@10")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/").split("/")[-1])


def dataset_collection(
    ds: BeirDataset, embedder: Any, *, cache_dir: str | Path = DEFAULT_CACHE, show_progress: bool = True
) -> Any:
    """Open (building on first use) the cached index of ``ds``'s corpus for ``embedder``.

    Examples:
        >>> col = dataset_collection(load_beir("../shared/datasets/adi"), make_embedder("hashing"))  # doctest: +SKIP
    """
    from rankfunnel.collection import open_collection

    folder = Path(cache_dir) / f"{_slug(ds.name)}-{_slug(embedder.name)}"
    marker = folder.parent / f"{folder.name}.complete.json"
    corpus = ds.path / "corpus.jsonl"
    stamp = {"corpus": str(corpus.resolve()), "bytes": corpus.stat().st_size, "embedder": embedder.name}
    if marker.is_file() and folder.is_dir():
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            done = {}
        if {k: done.get(k) for k in stamp} == stamp:
            return open_collection(str(folder), embedder=embedder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    col = open_collection(str(folder), embedder=embedder, create=True)
    added, rejected = _index_corpus(col, ds, show_progress=show_progress)
    marker.write_text(
        json.dumps({**stamp, "docs": len(col), "added": added, "rejected": rejected}), encoding="utf-8"
    )
    return col


def _index_corpus(col: Any, ds: BeirDataset, *, show_progress: bool, chunk: int = 1024) -> tuple[int, int]:
    """Add the corpus with :func:`rankfunnel.ingest.index_source` (resumable); returns (added, rejected).

    BEIR corpora contain documents with neither title nor text (e.g. cranfield 471); like any invalid line
    they are skipped, counted and listed with their reason in ``<index>.rejects.jsonl`` beside the index.
    """
    from rankfunnel.ingest import default_rejects_path, index_source

    stats = index_source(
        col,
        ds.path / "corpus.jsonl",
        chunk_size=chunk,
        resume=True,
        show_progress=show_progress,
        rejects=default_rejects_path(col.path) if hasattr(col, "path") else None,
    )
    return stats.added, stats.rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetEval:
    """Everything measured on one dataset split: both runs, metrics, lift and per-query latencies."""

    dataset: str
    split: str
    retriever: str
    reranker: str | None
    top_k: int
    stage1: EvalResult
    reranked: EvalResult | None
    lift: Mapping[str, Lift]
    stage1_run: Mapping[str, Mapping[str, float]]
    reranked_run: Mapping[str, Mapping[str, float]] | None
    latency_ms: Mapping[str, Sequence[float]]
    skipped_no_relevant: int = 0
    rerank_failures: int = 0
    rerank_skipped: int = 0
    failure_reason: str | None = None
    stages: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    def summary(self) -> dict[str, Any]:
        """The JSON summary printed by ``rankfunnel eval --json``."""
        lat: dict[str, Any] = {}
        for key, vals in self.latency_ms.items():
            arr = np.asarray(vals, dtype=float)
            if arr.size:
                p50, p95, p99 = np.percentile(arr, [50, 95, 99])
                lat[key] = {
                    "mean": float(arr.mean()),
                    "p50": float(p50),
                    "p95": float(p95),
                    "p99": float(p99),
                }
        return {
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.stage1.queries,
            "skipped_no_relevant": self.skipped_no_relevant,
            "retriever": self.retriever,
            "reranker": self.reranker,
            "top_k": self.top_k,
            "stage1": dict(self.stage1.mean),
            "reranked": dict(self.reranked.mean) if self.reranked is not None else None,
            "lift": {m: lf.to_dict() for m, lf in self.lift.items()},
            "latency_ms": lat,
            "rerank_failures": self.rerank_failures,
            "rerank_skipped": self.rerank_skipped,
            "failure_reason": self.failure_reason,
            "stages": [dict(s) for s in self.stages],
        }

    def deltas(self, metric: str = "ndcg@10") -> list[float]:
        """Per-query ``reranked - stage1`` values of ``metric`` (empty without reranking)."""
        if self.reranked is None:
            return []
        after = self.reranked.per_query[metric]
        return [after[q] - v for q, v in self.stage1.per_query[metric].items() if q in after]


def _batches(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_pipeline(
    pipe: Any,
    ds: BeirDataset,
    *,
    top_k: int,
    retriever: str,
    rerank: bool | str,
    batch_size: int = 1,
    show_progress: bool = True,
) -> tuple[
    dict[str, dict[str, float]], dict[str, dict[str, float]] | None, dict[str, list[float]], int, int, str | None
]:
    """Search every query of ``ds`` with ``pipe`` (top_n = top_k so that all candidates are kept).

    Returns the stage-1 run, the final run, per-query latencies, the number of queries answered in stage-1
    order because reranking failed (a reranker failure or timeout), the number that ``rerank="auto"``'s skip
    policy answered from stage 1 by design (not failures), and the first failure's reason.
    The final run is what the pipeline returned for every query (stage-1
    order where it was not reranked, as a user of ``search`` gets); it is None when no query was reranked.
    """
    from rankfunnel.progress import progress

    qids = sorted(ds.queries)
    k = top_k + (1 if ds.self_ids else 0)  # one spare hit for the query's own document
    stage1: dict[str, dict[str, float]] = {}
    reranked: dict[str, dict[str, float]] = {}
    lat: dict[str, list[float]] = {"stage1": [], "rerank": [], "total": []}
    failures, skipped, reason = 0, 0, None
    with progress(f"{ds.name}: {retriever}{' + rerank' if rerank else ''}", len(qids), enabled=show_progress) as bar:
        for chunk in _batches(qids, batch_size):
            results: list[SearchResult] = pipe.search_many(
                [ds.queries[q] for q in chunk], top_k=k, top_n=k, retriever=retriever, rerank=rerank
            )
            for q, res in zip(chunk, results, strict=True):
                stage1[q] = {h.id: h.stage1_score for h in res.hits}
                if res.reranked:
                    # hits past an adaptive depth have no rerank score: keep them below, in their rank order
                    raws = [h.rerank_score for h in res.hits if h.rerank_score is not None]
                    floor = min(raws) if raws else 0.0
                    reranked[q] = {
                        h.id: (h.rerank_score if h.rerank_score is not None else floor - h.rank) for h in res.hits
                    }
                elif rerank is not False:
                    reranked[q] = {h.id: h.score for h in res.hits}  # what the pipeline answered
                    if (res.reason or "").startswith(AUTO_SKIP_PREFIX):
                        skipped += 1  # the skip policy chose stage 1: the answer users get, not a failure
                    else:
                        failures += 1
                        reason = reason or res.reason
                n = len(chunk)
                lat["stage1"].append(res.timings_ms.get("stage1_ms", 0.0) / n)
                lat["rerank"].append(res.timings_ms.get("rerank_ms", 0.0) / n)
                lat["total"].append(res.timings_ms.get("total_ms", 0.0) / n)
            bar.advance(len(chunk))
    if rerank is False:
        lat.pop("rerank")
    any_reranked = rerank is not False and failures + skipped < len(qids)
    return stage1, (reranked if any_reranked else None), lat, failures, skipped, reason


def _cut(
    run: Mapping[str, Mapping[str, float]], self_ids: Mapping[str, str], k: int
) -> dict[str, dict[str, float]]:
    cleaned = exclude_self(run, self_ids) if self_ids else {q: dict(d) for q, d in run.items()}
    return {q: {d: docs[d] for d in ranked_ids(docs)[:k]} for q, docs in cleaned.items()}


def evaluate_dataset(
    ds: BeirDataset,
    collection: Any,
    *,
    retriever: str = defaults.RETRIEVER,
    reranker: Any = None,
    top_k: int = defaults.TOP_K,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1,
    n_resamples: int = 10_000,
    show_progress: bool = True,
    rerank: bool | str = defaults.RERANK,
    reason: str | None = None,
    pipeline_options: Mapping[str, Any] | None = None,
) -> DatasetEval:
    """Evaluate stage 1 (and reranking when ``reranker`` is given) on ``ds``.

    Args:
        ds: the dataset split (see :func:`rankfunnel.eval.datasets.load_beir`).
        collection: its index (see :func:`dataset_collection`).
        retriever: ``dense``, ``bm25`` or ``hybrid``.
        reranker: a loaded reranker or None for stage 1 only.
        top_k: stage-1 depth (the reranker reads this many candidates).
        ks: cut-offs of the metrics.
        batch_size: queries per ``search_many`` call; 1 measures true per-query latency.
        n_resamples: bootstrap / randomisation resamples of the lift.
        show_progress: progress bar.
        rerank: True, False or ``"auto"`` (as :meth:`rankfunnel.pipeline.Pipeline.search`).
        reason: why there is no reranker (reported when ``reranker`` is None).
        pipeline_options: more :class:`~rankfunnel.pipeline.Pipeline` options (``fallbacks``, ``cache``,
            ``deadline_ms``, ``attempt_timeout_ms``, ``fail_open``, ``auto_margin``): the evaluation runs
            the same stage 2 as ``rankfunnel search``.

    Returns:
        A :class:`DatasetEval`.

    Examples:
        >>> r = evaluate_dataset(ds, col, retriever="bm25", reranker=FakeReranker())  # doctest: +SKIP
        >>> r.summary()["lift"]["ndcg@10"]["delta"]  # doctest: +SKIP
    """
    from rankfunnel.pipeline import Pipeline

    check_retriever(retriever)
    if not ds.queries:
        raise InvalidInputError(
            f"{ds.name}/{ds.split} has no judged query with a relevant document to evaluate."
        )
    names = metric_names(ks)
    stats_fn = getattr(reranker, "reset_stats", None)
    if stats_fn is not None:
        stats_fn()
    pipe = Pipeline(
        collection, reranker, retriever=retriever, top_k=top_k, top_n=top_k, reason=reason,
        **dict(pipeline_options or {}),
    )
    s1, rr, lat, failures, skipped, why = run_pipeline(
        pipe,
        ds,
        top_k=top_k,
        retriever=retriever,
        rerank=rerank if pipe.reranker is not None else False,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    s1 = _cut(s1, ds.self_ids, top_k)
    res1 = evaluate(ds.qrels, s1, names)
    res2 = lift = None
    if rr is not None:
        rr = _cut(rr, ds.self_ids, top_k)
        res2 = evaluate(ds.qrels, rr, names)
        lift = {
            m: paired_lift(res1.per_query[m], res2.per_query[m], metric=m, n_resamples=n_resamples)
            for m in LIFT_METRICS
            if m in res1.per_query
        }
    stages: list[dict[str, Any]] = []
    if reranker is not None and hasattr(reranker, "stage_stats"):
        stages = cascade_stage_report(ds, s1, reranker, names, collection)
    return DatasetEval(
        dataset=ds.name,
        split=ds.split,
        retriever=retriever,
        reranker=getattr(reranker, "name", None) if reranker is not None else None,
        top_k=top_k,
        stage1=res1,
        reranked=res2,
        lift=lift or {},
        stage1_run=s1,
        reranked_run=rr,
        latency_ms=lat,
        skipped_no_relevant=ds.skipped_no_relevant,
        rerank_failures=failures,
        rerank_skipped=skipped,
        failure_reason=why if pipe.reranker is not None else reason,
        stages=stages,
    )


def cascade_stage_report(
    ds: BeirDataset,
    stage1_run: Mapping[str, Mapping[str, float]],
    cascade: Any,
    names: Sequence[str],
    collection: Any,
) -> list[dict[str, Any]]:
    """Quality and cost of each prefix of a cascade: stage ``i`` is the cascade cut after its ``i``-th model.

    The cost (pairs scored, seconds) of the full cascade run comes from ``cascade.stage_stats()``; the quality
    of each prefix is measured by rerunning the prefix on the same stage-1 candidates.
    """
    from rankfunnel.rerank.cascade import CascadeReranker

    totals = list(cascade.stage_stats())
    out: list[dict[str, Any]] = []
    qids = [q for q in sorted(stage1_run) if q in ds.queries]
    wanted = sorted({d for q in qids for d in stage1_run[q]})
    docs_by_id = {d.id: d.content for d in collection.get(wanted)} if wanted else {}
    for i, st in enumerate(totals):
        prefix = CascadeReranker(cascade.stages[: i + 1], early_stop=getattr(cascade, "early_stop", None))
        run: dict[str, dict[str, float]] = {}
        for q in qids:
            order = ranked_ids(stage1_run[q])
            ranked = prefix.rank(ds.queries[q], [docs_by_id.get(d, "") for d in order])
            run[q] = {order[j]: float(len(order) - r) for r, (j, _, _) in enumerate(ranked)}
        res = evaluate(ds.qrels, run, names)
        n = max(1, len(qids))
        out.append(
            {
                "stage": i + 1,
                "name": st.name,
                "cutoff": st.cutoff,
                "pairs_per_query": st.pairs / n,
                "ms_per_query": 1e3 * st.seconds / n,
                "stopped_early": st.stopped,  # queries not passed on (the cascade's early stop)
                "ndcg@10": res.mean.get("ndcg@10"),
                "mrr@10": res.mean.get("mrr@10"),
            }
        )
    return out


def write_trec_run(
    run: Mapping[str, Mapping[str, float]], path: str | Path, *, tag: str = "rankfunnel"
) -> Path:
    """Write ``run`` in TREC format (``qid Q0 docid rank score tag``), ranked with the documented tie-break.

    Examples:
        >>> write_trec_run({"q1": {"d1": 0.5}}, "/tmp/run.trec")  # doctest: +SKIP
    """
    path = Path(path)
    tag = re.sub(r"\s+", "_", tag) or "rankfunnel"
    with path.open("w", encoding="utf-8") as fh:
        for q in sorted(run):
            for r, d in enumerate(ranked_ids(run[q]), 1):
                fh.write(f"{q} Q0 {d} {r} {float(run[q][d]):.6f} {tag}\n")
    return path
