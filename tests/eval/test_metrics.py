from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.eval.metrics import (
    evaluate,
    exclude_self,
    metric_names,
    ndcg_at_k,
    parse_metric,
    rank_run,
    ranked_ids,
)


def _random_case(seed: int, n_queries: int = 40):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for qi in range(n_queries):
        q = f"q{qi}"
        docs = [f"d{rng.randrange(60):02d}" for _ in range(rng.randrange(1, 40))]
        # graded labels 0-3 on a random subset, some judged docs never retrieved
        judged = {
            f"d{rng.randrange(60):02d}": rng.choice([0, 1, 1, 2, 3]) for _ in range(rng.randrange(1, 8))
        }
        if not any(g > 0 for g in judged.values()):
            judged[docs[0]] = 1
        qrels[q] = judged
        # coarse scores -> many ties
        run[q] = {d: float(rng.randrange(5)) for d in docs}
    return qrels, run


_RANX_SCRIPT = """
import json, sys
from ranx import Qrels, Run, evaluate
out = []
for case in json.load(open(sys.argv[1])):
    rq, rr = Qrels(case["qrels"]), Run(case["run"])
    res = evaluate(rq, rr, case["metrics"], return_mean=False, make_comparable=True)
    out.append({m: dict(zip(rq.keys(), map(float, v))) for m, v in res.items()})
print(json.dumps(out))
"""


def test_cross_check_with_ranx_to_1e9(tmp_path) -> None:
    pytest.importorskip("ranx")
    names = metric_names([1, 3, 5, 10, 20])
    cases = []
    for seed in (0, 1):
        qrels, run = _random_case(seed)
        # ranx's order of tied scores is unspecified (trec_eval: doc id descending), so ranx gets our
        # ranking as strictly decreasing scores: this checks the metric arithmetic, ties are tested below
        ranked = {q: {d: float(len(ids) - i) for i, d in enumerate(ids)} for q, ids in rank_run(run).items()}
        rel = {q: {d: g for d, g in j.items() if g > 0} for q, j in qrels.items()}
        cases.append((qrels, run, {"qrels": rel, "run": ranked, "metrics": names}))
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([c[2] for c in cases]))
    # numba's JIT compilation of ranx takes minutes on a loaded 2-core machine; the pure-Python mode of the
    # very same ranx functions is exact and takes seconds, so ranx runs in a subprocess without JIT
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _RANX_SCRIPT, str(path)], capture_output=True, text=True, env=env, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs_all = json.loads(proc.stdout)
    for (qrels, run, _), theirs in zip(cases, theirs_all, strict=True):
        ours = evaluate(qrels, run, names)
        for m in names:
            assert set(theirs[m]) == set(ours.per_query[m])
            for q, v in theirs[m].items():
                assert math.isclose(ours.per_query[m][q], v, abs_tol=1e-9), (m, q)


def test_ties_broken_by_score_then_doc_id() -> None:
    assert ranked_ids({"b": 1.0, "a": 1.0, "c": 2.0, "aa": 1.0}) == ["c", "a", "aa", "b"]
    qrels = {"q": {"b": 1}}
    # "a" and "b" tie: "a" ranks first, so the relevant "b" is at rank 2
    r = evaluate(qrels, {"q": {"b": 0.5, "a": 0.5}}, ["mrr@10", "ndcg@1"])
    assert r.mean["mrr@10"] == 0.5 and r.mean["ndcg@1"] == 0.0


def test_hand_computed_values() -> None:
    qrels = {"q": {"d1": 2, "d2": 1, "d9": 1}}
    run = {"q": {"d1": 0.1, "d2": 0.9, "d3": 0.5}}  # ranking: d2, d3, d1
    r = evaluate(qrels, run, ["ndcg@3", "mrr@3", "precision@2", "recall@3", "map@3", "precision@10"])
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert math.isclose(r.mean["ndcg@3"], dcg / idcg, abs_tol=1e-12)
    assert r.mean["mrr@3"] == 1.0
    assert r.mean["precision@2"] == 0.5
    assert math.isclose(r.mean["recall@3"], 2 / 3)
    assert math.isclose(r.mean["map@3"], (1 / 1 + 2 / 3) / 3)
    assert r.mean["precision@10"] == 2 / 10  # trec_eval: divide by k even if fewer were retrieved


def test_skipped_queries_and_missing_runs() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}, "q3": {"c": 1}}
    r = evaluate(qrels, {"q1": {"a": 1.0}, "q9": {"x": 1.0}}, ["ndcg@10"])
    assert r.queries == 2 and r.skipped_no_relevant == 1 and r.missing_from_run == 1
    assert r.per_query["ndcg@10"] == {"q1": 1.0, "q3": 0.0}
    assert r.mean["ndcg@10"] == 0.5


def test_empty_and_invalid_inputs() -> None:
    assert evaluate({}, {}, ["ndcg@10"]).mean["ndcg@10"] == 0.0
    assert ndcg_at_k({"a": 0}, ["a"], 10) == 0.0
    assert evaluate({"q": {"a": 1}}, {"q": {}}, ["recall@5"]).mean["recall@5"] == 0.0
    for bad in ("ndcg", "ndcg@0", "foo@10", "ndcg@x"):
        with pytest.raises(InvalidInputError):
            parse_metric(bad)
    with pytest.raises(InvalidInputError):
        evaluate({"q": {"a": 1}}, {}, [])
    assert parse_metric("P@5") == ("precision", 5)


def test_inputs_not_mutated_and_self_exclusion() -> None:
    run = {"q": {"q": 9.0, "d": 1.0}}
    qrels = {"q": {"d": 1}}
    before = {k: dict(v) for k, v in run.items()}
    cleaned = exclude_self(run, {"q": "q"})
    evaluate(qrels, run, ["mrr@10"])
    assert run == before
    assert evaluate(qrels, cleaned, ["mrr@10"]).mean["mrr@10"] == 1.0
    assert evaluate(qrels, run, ["mrr@10"]).mean["mrr@10"] == 0.5
