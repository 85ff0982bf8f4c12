from __future__ import annotations

import numpy as np
import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.cascade import CascadeReranker
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.types import Document, Hit


class ScriptedReranker(FakeReranker):
    """Scores each document by a fixed table; records the documents it saw."""

    def __init__(self, table, name):
        super().__init__(name=name)
        self.table = table
        self.seen = []

    def predict(self, pairs):
        self.seen.append([d for _, d in pairs])
        self.pairs_scored += len(pairs)
        return np.array([self.table[d] for _, d in pairs], dtype=np.float32)


def _hits(docs):
    return [Hit(id=d, rank=i + 1, score=0.0, stage1_rank=i + 1, stage1_score=0.0,
                document=Document(id=d, text=d)) for i, d in enumerate(docs)]


def test_fake_reranker_is_deterministic_and_can_fail_or_wait():
    r = FakeReranker()
    a = r.score("red car", ["a red car", "blue", "red"])
    np.testing.assert_array_equal(a, [10.0, 0.0, 5.0])
    np.testing.assert_array_equal(a, r.score("red car", ["a red car", "blue", "red"]))
    assert r.calls == 2 and r.pairs_scored == 6
    with pytest.raises(TimeoutError):
        FakeReranker(fail_with=TimeoutError("boom")).score("q", ["d"])
    slow = FakeReranker(delay_s=0.05)
    import time

    t = time.perf_counter()
    slow.score("q", ["d"])
    assert time.perf_counter() - t >= 0.045


def test_cascade_reads_only_survivors_and_orders_tiers():
    docs = [f"d{i}" for i in range(8)]
    cheap = ScriptedReranker({d: float(i) for i, d in enumerate(docs)}, "cheap")  # prefers later docs
    big = ScriptedReranker({d: -float(i) for i, d in enumerate(docs)}, "big")  # prefers earlier docs
    cascade = CascadeReranker([(cheap, 6), (big, 3)])
    hits = cascade.rerank("q", _hits(docs))
    assert cheap.seen == [docs[:6]]  # stage 0 reads the top 6 of the input order
    assert sorted(big.seen[0]) == ["d3", "d4", "d5"]  # stage 1 reads the top 3 of cheap's order
    # big's survivors by big's score, then the rest of cheap's top 6 in cheap's order, then unread docs
    assert [h.id for h in hits] == ["d3", "d4", "d5", "d2", "d1", "d0", "d6", "d7"]
    assert [h.rank for h in hits] == list(range(1, 9))
    assert hits[0].rerank_score == -3.0 and hits[3].rerank_score == 2.0
    assert hits[-1].rerank_score is None and hits[-1].score == 0.0
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)  # capped: never increase down the ranking
    stats = cascade.last_stats
    assert [(s.name, s.pairs) for s in stats] == [("cheap", 6), ("big", 3)]
    assert all(s.seconds >= 0 for s in stats)
    assert cascade.rank("q", docs, top_n=2)[0][0] == 3
    assert [s.pairs for s in cascade.stage_stats()] == [12, 6]
    cascade.reset_stats()
    assert [s.pairs for s in cascade.stage_stats()] == [0, 0]


def test_cascade_batches_across_queries_and_predict_follows_order():
    cheap, big = FakeReranker(name="cheap"), FakeReranker(name="big", scale=3.0)
    cascade = CascadeReranker([(cheap, 3), (big, 1)])
    docs = ["red car", "red", "blue", "car red blue"]
    out = cascade.rerank_many(["red car", "blue"], [_hits(docs), _hits(docs)], top_n=2)
    assert cheap.calls == 1 and cheap.pairs_scored == 6  # one batched call for both queries
    assert big.calls == 1 and big.pairs_scored == 2
    assert [h.id for h in out[1]] == ["blue", "red car"]
    pred = cascade.predict([("red car", d) for d in docs])
    ranked = [i for i, _, _ in cascade.rank("red car", docs)]
    assert list(np.argsort(-pred, kind="stable")) == ranked


def test_cascade_short_lists_and_validation():
    cascade = CascadeReranker([(FakeReranker(), 100), (FakeReranker(), 20)])
    assert [h.id for h in cascade.rerank("red", _hits(["blue", "red"]))] == ["red", "blue"]
    assert cascade.rerank_many([], []) == []
    assert cascade.rank("red", []) == []
    with pytest.raises(InvalidInputError, match="shrinking"):
        CascadeReranker([(FakeReranker(), 10), (FakeReranker(), 20)])
    with pytest.raises(InvalidInputError):
        CascadeReranker([])
    with pytest.raises(InvalidInputError):
        cascade.rerank_many(["a"], [])


def test_early_stop_skips_later_stages_when_the_first_is_confident():
    cheap = ScriptedReranker({"sure": 10.0, "meh": -10.0, "a": 1.0, "b": 0.9, "c": 0.8}, "cheap")
    big = ScriptedReranker({"sure": 0.0, "meh": 5.0, "a": 0.0, "b": 3.0, "c": 1.0}, "big")
    cascade = CascadeReranker([(cheap, 3), (big, 2)], early_stop=0.5)
    confident, unsure = cascade.rerank_many(["q1", "q2"], [_hits(["meh", "sure"]), _hits(["a", "b", "c"])])
    assert [h.id for h in confident] == ["sure", "meh"]  # cheap's order: big never read q1
    assert [h.id for h in unsure] == ["b", "a", "c"]  # calibrated lead of a over b is tiny: big decides
    assert big.seen == [["a", "b"]]
    assert [(s.pairs, s.stopped) for s in cascade.last_stats] == [(5, 1), (2, 0)]
    assert CascadeReranker([(cheap, 3), (big, 2)]).name == "cheap:3,big:2"
    assert cascade.name == "cheap:3,big:2,stop=0.5"
    with pytest.raises(InvalidInputError, match="early_stop"):
        CascadeReranker([(cheap, 3)], early_stop=2.0)


def test_cascade_spec_takes_a_stop_margin():
    from rankfunnel.rerank import load_reranker

    cascade = load_reranker("fake:10,fake:3,stop=0.25")
    assert isinstance(cascade, CascadeReranker) and cascade.early_stop == 0.25 and len(cascade.stages) == 2
    with pytest.raises(InvalidInputError, match="stop=M"):
        load_reranker("fake:10,fake:3,stop=high")
