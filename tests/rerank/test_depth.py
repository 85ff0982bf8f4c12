"""Adaptive rerank depth: the policy, its JSON, Stage2 applying it, and fitting its thresholds."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankfunnel.errors import InvalidInputError
from rankfunnel.eval.depth import depth_curve, fit_depth_policy, rerank_at_depth
from rankfunnel.rerank.depth import DepthPolicy, signal_value
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.rerank.stage2 import Stage2
from rankfunnel.types import Document, Hit


def mk(scores, texts=None, prefix="d") -> list[Hit]:
    texts = texts or [f"doc {i}" for i in range(len(scores))]
    return [
        Hit(id=f"{prefix}{i}", rank=i + 1, score=s, stage1_rank=i + 1, stage1_score=s,
            document=Document(id=f"{prefix}{i}", text=t))
        for i, (s, t) in enumerate(zip(scores, texts, strict=True))
    ]


def test_signals() -> None:
    s = [3.0, 1.0, 1.0, 1.0]
    assert signal_value("gap", s) == 2.0
    assert signal_value("gap_z", s) == pytest.approx(2.0 / float(np.std(s)))
    flat, peaked = signal_value("peak", [1.0] * 4), signal_value("peak", [9.0, 0.0, 0.0, 0.0])
    assert flat == pytest.approx(-math.log(4)) and peaked > flat
    assert signal_value("gap", [1.0]) == math.inf
    with pytest.raises(InvalidInputError, match="unknown depth signal"):
        signal_value("agreement", s)


@pytest.mark.parametrize(
    "kw",
    [
        {"signal": "gap", "thresholds": (0.1, 0.5), "depths": (0, 10, 100)},  # increasing thresholds
        {"signal": "gap", "thresholds": (0.5,), "depths": (0, 10, 100)},  # wrong count
        {"signal": "gap", "thresholds": (0.5,), "depths": (10, 0)},  # decreasing depths
        {"signal": "gap", "thresholds": (), "depths": (0,)},  # last depth 0
        {"signal": "nope", "thresholds": (), "depths": (10,)},
    ],
)
def test_bad_policies_are_refused(kw) -> None:
    with pytest.raises(InvalidInputError):
        DepthPolicy(**kw)


def test_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    p = DepthPolicy("gap_z", (math.inf, 2.0, 1.0), (0, 10, 20, 100))
    path = p.save(tmp_path / "p.json")
    assert DepthPolicy.load(path) == p
    assert '"thresholds": [\n    null' in path.read_text()  # inf (never) is stored as null
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="must be JSON"):
        DepthPolicy.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"kind": "something else"}')
    with pytest.raises(InvalidInputError, match="not a depth policy"):
        DepthPolicy.load(tmp_path / "other.json")
    with pytest.raises(InvalidInputError, match="not found"):
        DepthPolicy.load(tmp_path / "missing.json")


def test_stage2_applies_the_depth_only_with_auto() -> None:
    texts = ["boat", "tree", "car", "red car", "red car red", "sky"]
    cands = mk([1.0, 0.95, 0.9, 0.8, 0.7, 0.6], texts)  # gap 0.05
    policy = DepthPolicy("gap", (0.5, 0.01), (0, 3, 6))  # gap 0.05 -> depth 3
    s2 = Stage2(FakeReranker(), depth=policy)
    res = s2.run(["red car"], [cands], top_n=5, rerank="auto")[0]
    assert res.reranked and res.pairs_scored == 3
    assert res.hits[0].id == "d2" and {h.id for h in res.hits[:3]} == {"d0", "d1", "d2"}  # "car" wins the head
    assert [h.id for h in res.hits[3:]] == ["d3", "d4"]  # past the depth: stage-1 order, no rerank score
    assert all(h.rerank_score is None for h in res.hits[3:]) and [h.rank for h in res.hits] == [1, 2, 3, 4, 5]
    full = s2.run(["red car"], [cands], top_n=5, rerank=True)[0]  # rerank=true: the whole list
    assert full.pairs_scored == 6 and full.hits[0].id in {"d3", "d4"}
    confident = mk([5.0, 0.1, 0.05], ["a", "b", "c"])
    skipped = s2.run(["q"], [confident], top_n=3, rerank="auto")[0]
    assert not skipped.reranked and "depth policy skipped" in (skipped.reason or "")

    class Async:
        async def score(self, pairs, timeout_s):
            return FakeReranker().predict(pairs)

    ares = asyncio.run(s2.arun(["red car"], [cands], top_n=5, scorers=[Async()], rerank="auto"))[0]
    assert ares.hits == res.hits and ares.pairs_scored == 3


def _synthetic(n: int = 40, size: int = 100):
    """Half the queries: stage 1 is confident (big top-1 gap) and already right, the reranker agrees.
    The other half: stage 1 is unsure and the relevant document sits at rank 40; only depth >= 50 finds it."""
    rng = np.random.default_rng(0)
    cands, qrels, scores = {}, {}, {}
    for i in range(n):
        q = f"q{i}"
        confident = i % 2 == 0
        s1 = np.sort(rng.uniform(0, 1, size))[::-1]
        if confident:
            s1[0] = s1[1] + 5.0
        hits = mk(s1.tolist(), prefix=f"{q}-")
        rel = 0 if confident else 40
        sc = rng.uniform(0, 1, size)
        sc[rel] = 10.0
        cands[q], qrels[q], scores[q] = hits, {hits[rel].id: 1}, sc
    return cands, qrels, scores


def test_fit_saves_pairs_at_zero_loss_and_generalises() -> None:
    cands, qrels, scores = _synthetic()
    policy = fit_depth_policy(cands, qrels, scores, max_loss=0.0)
    assert policy.choose(cands["q0"]) == 0 and policy.choose(cands["q1"]) in (50, 100)
    train = {k: v for k, v in cands.items() if int(k[1:]) < 20}
    test_c = {k: v for k, v in cands.items() if int(k[1:]) >= 20}
    fitted = fit_depth_policy(train, qrels, scores, max_loss=0.0)
    curve = depth_curve(test_c, qrels, scores, policy=fitted, n_resamples=200)
    pol = curve["policy"]
    assert pol["loss"] == pytest.approx(0.0) and pol["pairs_saved"] >= 0.5 - 1e-9
    fixed = {p["label"]: p for p in curve["fixed"]}
    assert fixed["top 10"]["loss"] > 0.2 and fixed["top 100"]["loss"] == 0.0  # shallow fixed depths lose
    assert pol["loss_ci95"][0] <= 0.0 <= pol["loss_ci95"][1]


def test_fit_respects_the_loss_bound_and_callable_scores() -> None:
    cands, qrels, scores = _synthetic()
    strict = fit_depth_policy(cands, qrels, lambda q, hits: scores[q], max_loss=0.0, depths=(0, 10, 100))
    loose = fit_depth_policy(cands, qrels, scores, max_loss=1.0, depths=(0, 10, 100))
    assert all(loose.choose(h) == 0 for h in cands.values())  # any loss allowed: never rerank
    assert strict.choose(cands["q1"]) == 100
    with pytest.raises(InvalidInputError, match="max_loss"):
        fit_depth_policy(cands, qrels, scores, max_loss=-1)
    with pytest.raises(InvalidInputError, match="nothing to fit"):
        fit_depth_policy({}, qrels, scores)


def test_rerank_at_depth_matches_stage2() -> None:
    cands = mk([1.0, 0.9, 0.8, 0.7], ["x", "red car", "car", "red"])
    raw = FakeReranker().predict([("red car", h.document.content) for h in cands])
    policy = DepthPolicy("gap", (math.inf,), (0, 3))  # always depth 3
    res = Stage2(FakeReranker(), depth=policy).run(["red car"], [cands], top_n=4, rerank="auto")[0]
    assert [h.id for h in res.hits] == rerank_at_depth(cands, raw, 3)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)), min_size=1, max_size=12),
    cut_a=st.integers(1, 12), cut_b=st.integers(1, 12), stop=st.sampled_from([None, 0.0, 0.1, 0.5, 0.99]),
)
def test_cascade_order_replays_the_cascade_exactly(data, cut_a, cut_b, stop) -> None:
    """The offline replay (used to fit the stop margin) = what CascadeReranker returns, and its pairs count."""
    from rankfunnel.eval.depth import cascade_order
    from rankfunnel.rerank.cascade import CascadeReranker

    cut_b = min(cut_a, cut_b)
    texts = [f"doc {i}" for i in range(len(data))]
    a = {t: float(x) for t, (x, _) in zip(texts, data, strict=True)}
    b = {t: float(y) for t, (_, y) in zip(texts, data, strict=True)}

    class Table(FakeReranker):
        def __init__(self, table):
            super().__init__()
            self.table = table

        def predict(self, pairs):
            return np.array([self.table[d] for _, d in pairs], dtype=np.float32)

    ra, rb = Table(a), Table(b)
    hits = mk([0.0] * len(texts), texts)
    cascade = CascadeReranker([(ra, cut_a), (rb, cut_b)], early_stop=stop)
    got = [h.id for h in cascade.rerank_many(["q"], [hits])[0]]
    raw_a = np.array([a[t] for t in texts])
    raw_b = np.array([b[t] for t in texts])
    ids, pairs = cascade_order(hits, [(raw_a, ra.normalise(raw_a)), (raw_b, rb.normalise(raw_b))],
                               [cut_a, cut_b], stop)
    assert ids == got and pairs == sum(s.pairs for s in cascade.last_stats)


def test_fit_cascade_stop_stops_confident_queries_within_the_loss_bound() -> None:
    from rankfunnel.eval.depth import fit_cascade_stop

    rng = np.random.default_rng(0)
    cands, qrels, scores = {}, {}, {}
    for i in range(60):
        hits = mk([0.0] * 20, prefix=f"q{i}-")
        rel = int(rng.integers(0, 20))
        qrels[f"q{i}"] = {hits[rel].id: 1}
        # stage A: confident (a big lead on the relevant doc) on even queries, noise on odd ones; B: always right
        raw_a = rng.normal(0, 0.1, 20)
        raw_a[rel] += 10.0 if i % 2 == 0 else 0.0
        raw_b = rng.normal(0, 0.1, 20)
        raw_b[rel] += 10.0
        scores[f"q{i}"] = [(raw_a, 1 / (1 + np.exp(-raw_a))), (raw_b, 1 / (1 + np.exp(-raw_b)))]
        cands[f"q{i}"] = hits
    fit = fit_cascade_stop(cands, qrels, scores, [20, 10], max_loss=0.0)
    assert fit["early_stop"] is not None and fit["loss"] <= 0.0
    assert fit["pairs_per_query"] == pytest.approx(20 + 10 * 0.5)  # B skipped for the 30 confident queries
    # A confidently wrong on every query (its lead is on a non-relevant doc): no margin qualifies
    wrong = {}
    for q, ((raw_a, _), b) in scores.items():
        rel = next(j for j, h in enumerate(cands[q]) if h.id in qrels[q])
        raw = raw_a.copy()
        raw[rel] = -5.0
        raw[(rel + 1) % 20] = 10.0 + 0.1 * int(q[1:])
        wrong[q] = [(raw, 1 / (1 + np.exp(-raw))), b]
    never = fit_cascade_stop(cands, qrels, wrong, [20, 20], max_loss=0.0)  # B reads all 20: it finds the doc
    assert never["early_stop"] is None and never["pairs_per_query"] == 40


def with_ranks(hits: list[Hit], ranks: list[dict[str, int] | None]) -> list[Hit]:
    from dataclasses import replace

    return [replace(h, stage1_ranks=r) for h, r in zip(hits, ranks, strict=True)]


def test_agreement_signals_read_the_per_retriever_ranks(caplog) -> None:
    from rankfunnel.rerank.depth import MISSING_RANK

    base = mk([0.9, 0.8, 0.7, 0.6])
    agree = with_ranks(base, [{"dense": 1, "bm25": 1}, {"dense": 2, "bm25": 3}, {"dense": 3}, {"bm25": 2}])
    assert signal_value("agree_top1", agree) == -1.0
    assert signal_value("agree", agree) == pytest.approx(2 / 4)  # hits 1 and 2 are in both top 10s
    split = with_ranks(base, [{"dense": 1}, {"bm25": 1}, {"dense": 2, "bm25": 40}, {"dense": 3, "bm25": 2}])
    assert signal_value("agree_top1", split) == -float(MISSING_RANK)
    assert signal_value("agree", split) == pytest.approx(1 / 4)
    # no per-retriever ranks (a single retriever), or only one retriever seen: never confident
    for hits in (base, with_ranks(base, [{"dense": r} for r in range(1, 5)]), [0.9, 0.1]):
        assert signal_value("agree", hits) == -math.inf and signal_value("agree_top1", hits) == -math.inf
    assert signal_value("gap", agree) == pytest.approx(0.1)  # score signals still read stage1_score
    policy = DepthPolicy("agree_top1", (-1.0,), (0, 100))
    assert policy.choose(agree) == 0 and policy.choose(split) == 100
    from rankfunnel.rerank import depth as depth_module

    depth_module._warned_no_ranks.discard("agree_top1")  # warned once per process: start from "not yet"
    with caplog.at_level(logging.WARNING, logger="rankfunnel.rerank.depth"):
        assert policy.choose(base) == 100 and policy.choose(base) == 100  # no ranks: full depth, said once
    assert [r.getMessage().count("needs hybrid stage-1 hits") for r in caplog.records] == [1]
    assert "agree_top1=-1" in (policy("q", agree) or "")


def test_fit_picks_agreement_when_it_is_what_tells_whether_to_rerank() -> None:
    """Stage-1 scores carry no information here (same distribution everywhere); where dense and BM25 agree on
    the top-1 it is the relevant document, where they disagree the relevant one is at rank 30 and only the
    reranker finds it. The fit must choose an agreement signal and skip exactly the agreeing queries."""
    rng = np.random.default_rng(3)
    cands, qrels, scores = {}, {}, {}
    for i in range(60):
        q = f"q{i}"
        agree = i % 2 == 0
        hits = mk(np.sort(rng.uniform(0, 1, 100))[::-1].tolist(), prefix=f"{q}-")
        ranks = [{"dense": r, "bm25": r} if agree else {"dense": r, "bm25": r + 1} for r in range(1, 101)]
        if not agree:
            ranks[0] = {"dense": 1}  # BM25 did not return the dense top-1
        cands[q] = with_ranks(hits, ranks)
        rel = 0 if agree else 30
        sc = rng.uniform(0, 1, 100)
        sc[rel] = 10.0
        qrels[q], scores[q] = {hits[rel].id: 1}, sc
    policy = fit_depth_policy(cands, qrels, scores, max_loss=0.0)
    assert policy.signal in ("agree", "agree_top1")
    assert [policy.choose(cands[f"q{i}"]) == 0 for i in range(60)] == [i % 2 == 0 for i in range(60)]
    # the same queries with ranks stripped: no agreement signal can fire; the scores say nothing, so the fit
    # must rerank (nearly) every query to depth 50 (rank 31 is relevant) instead of half of them
    bare = {q: [replace_ranks(h) for h in hs] for q, hs in cands.items()}
    blind = fit_depth_policy(bare, qrels, scores, max_loss=0.0)
    assert blind.signal not in ("agree", "agree_top1")
    assert np.mean([blind.choose(hs) for hs in bare.values()]) > 40
    assert np.mean([policy.choose(hs) for hs in cands.values()]) == 25  # 0 or 50


def replace_ranks(h: Hit) -> Hit:
    from dataclasses import replace

    return replace(h, stage1_ranks=None)
