"""Ranking metrics as pure functions over the TREC run format.

``qrels: dict[qid, dict[docid, int]]`` holds judgements (grade > 0 is relevant; higher is more relevant),
``run: dict[qid, dict[docid, float]]`` holds retrieval scores (higher is better). Nothing is mutated,
logged or rounded.

Conventions (the same as trec_eval / pytrec_eval and ranx unless stated):

- **Ordering and ties.** A query's documents are ranked by score descending, then by document id
  *ascending* (plain string comparison), so that every run has exactly one ranking. trec_eval breaks ties
  by document id *descending* and ranx uses an unstable sort, so on runs with tied scores those tools can
  report other numbers; the cross-check test therefore feeds them the ranking produced here (as strictly
  decreasing scores) and compares the metric arithmetic to 1e-9.
- **nDCG@k** uses linear gain (the grade itself, ``rel / log2(rank + 1)``) as trec_eval's ``ndcg_cut``
  and ranx's ``ndcg`` do; the ideal ranking is built from all judged grades of the query.
- **Precision@k** divides by ``k`` even when fewer than ``k`` documents were retrieved (trec_eval).
- **Recall@k** and **AP@k** divide by the number of relevant documents of the query (trec_eval's
  ``map_cut``), so AP@k can stay below 1 when a query has more than ``k`` relevant documents.
- **MRR@k** is 1/rank of the first relevant document within the top ``k``, else 0.
- Queries of ``qrels`` without any relevant document are **skipped and counted**
  (:attr:`EvalResult.skipped_no_relevant`); queries judged but absent from the run score 0.
  Queries of the run that are not in ``qrels`` are ignored.

Examples:
    >>> qrels = {"q1": {"d1": 1, "d3": 2}}
    >>> run = {"q1": {"d1": 0.9, "d2": 0.5, "d3": 0.1}}
    >>> r = evaluate(qrels, run, ["mrr@10", "precision@2"])
    >>> r.mean["mrr@10"], r.mean["precision@2"]
    (1.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rankfunnel.errors import InvalidInputError

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

METRIC_NAMES: tuple[str, ...] = ("ndcg", "mrr", "precision", "recall", "map")
DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 100)


def ranked_ids(scores: Mapping[str, float]) -> list[str]:
    """Document ids ordered by score descending, ties broken by document id ascending.

    Examples:
        >>> ranked_ids({"b": 1.0, "a": 1.0, "c": 2.0})
        ['c', 'a', 'b']
    """
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (-float(kv[1]), kv[0]))]


def _relevant(judged: Mapping[str, int]) -> dict[str, int]:
    return {d: int(g) for d, g in judged.items() if g > 0}


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be an integer >= 1, got {k!r}.")


def dcg_at_k(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of a list of gains (rank 1 first) with linear gain."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]) if g)


def ndcg_at_k(judged: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    """nDCG@k of one query (linear gain); 0.0 when the query has no relevant document."""
    _check_k(k)
    rel = _relevant(judged)
    ideal = dcg_at_k(sorted(rel.values(), reverse=True), k)
    if ideal == 0.0:
        return 0.0
    return dcg_at_k([rel.get(d, 0) for d in ranking], k) / ideal


def mrr_at_k(judged: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top ``k`` (0.0 if none)."""
    _check_k(k)
    for i, d in enumerate(ranking[:k]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def precision_at_k(judged: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    """Relevant documents in the top ``k`` divided by ``k``."""
    _check_k(k)
    return sum(1 for d in ranking[:k] if judged.get(d, 0) > 0) / k


def recall_at_k(judged: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    """Relevant documents in the top ``k`` divided by all relevant documents (0.0 if there are none)."""
    _check_k(k)
    n_rel = sum(1 for g in judged.values() if g > 0)
    if n_rel == 0:
        return 0.0
    return sum(1 for d in ranking[:k] if judged.get(d, 0) > 0) / n_rel


def ap_at_k(judged: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    """Average precision cut at ``k``, normalised by all relevant documents (trec_eval ``map_cut``)."""
    _check_k(k)
    n_rel = sum(1 for g in judged.values() if g > 0)
    if n_rel == 0:
        return 0.0
    hits = 0
    total = 0.0
    for i, d in enumerate(ranking[:k]):
        if judged.get(d, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / n_rel


_FUNCS = {
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "precision": precision_at_k,
    "recall": recall_at_k,
    "map": ap_at_k,
}


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``; raises InvalidInputError on unknown names.

    Examples:
        >>> parse_metric("NDCG@10")
        ('ndcg', 10)
    """
    base, sep, k_text = name.strip().lower().partition("@")
    if base == "p":
        base = "precision"
    if base not in _FUNCS or not sep or not k_text.isdigit() or int(k_text) < 1:
        raise InvalidInputError(
            f"Unknown metric {name!r}: use NAME@K with NAME one of {', '.join(METRIC_NAMES)} and K >= 1, "
            "e.g. ndcg@10."
        )
    return base, int(k_text)


def metric_names(ks: Sequence[int] = DEFAULT_KS, names: Sequence[str] = METRIC_NAMES) -> list[str]:
    """All ``NAME@K`` combinations, e.g. ``metric_names([10], ["ndcg"]) == ["ndcg@10"]``."""
    for k in ks:
        _check_k(k)
    return [f"{n}@{k}" for n in names for k in ks]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalResult:
    """Per-query and mean metric values of one run.

    ``per_query[metric][qid]`` covers exactly the evaluated queries (judged with >= 1 relevant document);
    ``mean[metric]`` is their arithmetic mean (0.0 when no query was evaluated).
    """

    metrics: tuple[str, ...]
    per_query: Mapping[str, Mapping[str, float]]
    mean: Mapping[str, float]
    queries: int
    skipped_no_relevant: int
    missing_from_run: int = 0
    query_ids: tuple[str, ...] = field(default_factory=tuple)


def evaluate(qrels: Qrels, run: Run, metrics: Sequence[str]) -> EvalResult:
    """Evaluate ``run`` against ``qrels`` for ``metrics`` (``"ndcg@10"``, ``"recall@100"``, ...).

    Args:
        qrels: judgements per query; grade > 0 is relevant.
        run: retrieval scores per query; ranked with :func:`ranked_ids`.
        metrics: metric names ``NAME@K``.

    Returns:
        An :class:`EvalResult` with per-query values and means.

    Examples:
        >>> evaluate({"q": {"a": 1}}, {"q": {"a": 0.2, "b": 0.9}}, ["ndcg@10"]).mean["ndcg@10"]
        0.6309297535714575
    """
    if not metrics:
        raise InvalidInputError("No metric requested: pass names such as ['ndcg@10'].")
    parsed = [(m, *parse_metric(m)) for m in metrics]
    qids = sorted(q for q, judged in qrels.items() if any(g > 0 for g in judged.values()))
    skipped = len(qrels) - len(qids)
    missing = sum(1 for q in qids if q not in run)
    per_query: dict[str, dict[str, float]] = {m: {} for m, _, _ in parsed}
    for q in qids:
        ranking = ranked_ids(run.get(q, {}))
        judged = qrels[q]
        for m, base, k in parsed:
            per_query[m][q] = _FUNCS[base](judged, ranking, k)
    mean = {m: (math.fsum(v.values()) / len(v) if v else 0.0) for m, v in per_query.items()}
    return EvalResult(
        metrics=tuple(m for m, _, _ in parsed),
        per_query=per_query,
        mean=mean,
        queries=len(qids),
        skipped_no_relevant=skipped,
        missing_from_run=missing,
        query_ids=tuple(qids),
    )


def exclude_self(run: Run, self_ids: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """A copy of ``run`` without each query's own document (ArguAna's ``corpus_id_of_self`` convention).

    Examples:
        >>> exclude_self({"q": {"q": 1.0, "d": 0.5}}, {"q": "q"})
        {'q': {'d': 0.5}}
    """
    return {q: {d: s for d, s in docs.items() if d != self_ids.get(q)} for q, docs in run.items()}


def rank_run(run: Run) -> dict[str, list[str]]:
    """Each query's ranking under the documented tie-break (used for TREC files and cross-checks)."""
    return {q: ranked_ids(docs) for q, docs in run.items()}
