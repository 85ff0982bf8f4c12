"""Pipeline: ordering, fields, timings, fail-open, batching, from_dir, auto reranker choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.pipeline import Pipeline
from rankfunnel.rerank.base import BaseReranker
from rankfunnel.rerank.fake import FakeReranker

QUERIES = [
    "manager approval for a discount",
    "list index out of range",
    "boiling water altitude",
    "termination after breach",
]


def reference(collection, reranker, query: str, k: int, n: int, retriever: str = "dense"):
    """Brute-force expectation: stage-1 hits, raw scores from predict, stable sort by raw score."""
    stage1 = collection.search(query, k=k, retriever=retriever)
    raw = reranker.predict([(query, h.document.content) for h in stage1])
    order = np.argsort(-raw, kind="stable")[:n]
    return stage1, raw, order


@pytest.mark.parametrize("retriever", ["dense", "bm25", "hybrid"])
def test_search_reranks_and_keeps_every_field(collection, retriever: str) -> None:
    fake = FakeReranker()
    pipe = Pipeline(collection, fake, retriever=retriever, top_k=8, top_n=5)
    query = "list index out of range"
    res = pipe.search(query)
    stage1, raw, order = reference(collection, fake, query, 8, 5, retriever)
    assert res.reranked and res.reason is None and res.reranker == "fake" and res.retriever == retriever
    assert [h.id for h in res.hits] == [stage1[i].id for i in order]
    for rank, (h, i) in enumerate(zip(res.hits, order, strict=True), start=1):
        assert h.rank == rank
        assert h.stage1_rank == stage1[i].stage1_rank == i + 1
        assert h.stage1_score == pytest.approx(stage1[i].stage1_score)
        assert h.rerank_score == pytest.approx(float(raw[i]))
        assert h.score == pytest.approx(float(fake.normalise(np.array([raw[i]]))[0]))
        assert h.document is not None and h.document.id == h.id
    assert set(res.timings_ms) >= {"stage1_ms", "rerank_ms", "total_ms"}
    assert all(v >= 0 for v in res.timings_ms.values())
    assert res.timings_ms["total_ms"] >= res.timings_ms["stage1_ms"]


def test_rerank_false_and_no_reranker_give_stage1(collection) -> None:
    stage1 = collection.search("floor price exception", k=6)
    for pipe, kwargs, needle in [
        (Pipeline(collection, FakeReranker()), {"rerank": False}, "rerank=false"),
        (Pipeline(collection, None), {}, "no reranker"),
    ]:
        res = pipe.search("floor price exception", top_k=6, top_n=4, **kwargs)
        assert not res.reranked and needle in res.reason
        assert [h.id for h in res.hits] == [h.id for h in stage1[:4]]
        assert all(
            h.rank == h.stage1_rank and h.score == h.stage1_score and h.rerank_score is None for h in res.hits
        )
        assert res.timings_ms["rerank_ms"] == 0.0


def test_reranker_failure_fails_open(collection, caplog: pytest.LogCaptureFixture) -> None:
    broken = FakeReranker(fail_with=RuntimeError("CUDA out of memory"))
    pipe = Pipeline(collection, broken, top_k=5, top_n=3)
    res = pipe.search("tides and the moon")
    assert not res.reranked
    assert "RuntimeError" in res.reason and "CUDA out of memory" in res.reason and "fake" in res.reason
    stage1 = collection.search("tides and the moon", k=5)
    assert [h.id for h in res.hits] == [h.id for h in stage1[:3]]
    assert all(h.rerank_score is None for h in res.hits)
    assert "failed" in caplog.text


class NaNReranker(BaseReranker):
    name = "nan"

    def predict(self, pairs):
        return np.full(len(pairs), np.nan, dtype=np.float32)


def test_non_finite_scores_are_not_passed_off_as_reranked(collection) -> None:
    res = Pipeline(collection, NaNReranker()).search("oral agreement", top_k=4, top_n=2)
    assert not res.reranked and "non-finite" in res.reason and len(res.hits) == 2


def test_search_many_equals_per_query_search_in_one_predict(collection) -> None:
    fake = FakeReranker()
    pipe = Pipeline(collection, fake, retriever="hybrid", top_k=6, top_n=3)
    single = [pipe.search(q) for q in QUERIES]
    fake.calls = 0
    many = pipe.search_many(QUERIES)
    assert fake.calls == 1  # pairs of all queries scored in one batched predict
    assert [r.hits for r in many] == [r.hits for r in single]
    assert [r.query for r in many] == QUERIES and all(r.reranked for r in many)
    assert many[0].timings_ms["batch_queries"] == len(QUERIES)
    assert pipe.search_many([]) == []


def test_search_many_failure_marks_every_result(collection) -> None:
    pipe = Pipeline(collection, FakeReranker(fail_with=ValueError("bad batch")), top_k=4, top_n=2)
    results = pipe.search_many(QUERIES[:2])
    assert all(not r.reranked and "bad batch" in r.reason for r in results)


def test_filter_and_small_top_k(collection) -> None:
    pipe = Pipeline(collection, FakeReranker(), top_k=100, top_n=10)
    res = pipe.search("error in python code", filter={"domain": "code"})
    assert {h.document.metadata["domain"] for h in res.hits} == {"code"} and len(res.hits) == 3
    res = pipe.search("discount", top_k=2, top_n=10)
    assert len(res.hits) == 2


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda p: p.search(""), "empty"),
        (lambda p: p.search("   "), "empty"),
        (lambda p: p.search("q", top_k=0), "top_k"),
        (lambda p: p.search("q", top_n=-1), "top_n"),
        (lambda p: p.search("q", retriever="sparse"), "retriever"),
        (lambda p: p.search_many("one string"), "list of queries"),
        (lambda p: p.search_many(["ok", ""]), "empty"),
    ],
)
def test_bad_arguments(collection, call, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        call(Pipeline(collection, FakeReranker()))


def test_constructor_validates(collection) -> None:
    with pytest.raises(InvalidInputError):
        Pipeline(collection, retriever="nope")
    with pytest.raises(InvalidInputError):
        Pipeline(collection, top_k=0)


def test_from_dir_loads_reranker_or_falls_back(small_index: Path) -> None:
    pipe = Pipeline.from_dir(small_index, reranker="fake", top_k=5, top_n=2)
    assert pipe.search("moon tides").reranked
    off = Pipeline.from_dir(small_index, reranker="none")
    res = off.search("moon tides")
    assert not res.reranked and "switched off" in res.reason
    with pytest.warns(UserWarning, match="could not be loaded"):
        broken = Pipeline.from_dir(small_index, reranker=str(small_index / "no-such-model"))
    res = broken.search("moon tides")
    assert not res.reranked and "could not be loaded" in res.reason and res.hits


def test_from_dir_auto_offline_without_a_reranker_is_stage_1_with_a_reason(
    small_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankfunnel.rerank import resolve

    monkeypatch.setattr(resolve, "model_on_disk", lambda name: False)
    res = Pipeline.from_dir(small_index, reranker="auto", device="cpu", offline=True).search("moon tides")
    assert not res.reranked and res.hits
    assert "make reranker" in res.reason and "--reranker PATH" in res.reason


def test_queries_without_candidates_in_a_batch(collection) -> None:
    pipe = Pipeline(collection, FakeReranker(), retriever="bm25", top_k=5, top_n=3)
    many = pipe.search_many(["discount approval", "zzzqqq"])
    assert many[0].reranked and many[0].hits  # only documents sharing a term come back from BM25
    assert not many[1].reranked and many[1].hits == () and "no candidates" in many[1].reason
    single = [pipe.search("discount approval"), pipe.search("zzzqqq")]
    assert [r.hits for r in single] == [r.hits for r in many]
    assert [r.reranked for r in single] == [True, False]


def test_from_dir_uses_the_stored_calibration(tmp_path: Path, fake_embedder, collection) -> None:
    from rankfunnel.collection import open_collection
    from rankfunnel.rerank.calibration import Calibration, save_calibration

    idx = tmp_path / "idx"
    open_collection(str(idx), embedder=fake_embedder, create=True).add(collection.get(collection.ids()))
    default = Pipeline.from_dir(idx, reranker="fake", top_k=5, top_n=3).search("moon tides")
    save_calibration(idx, "fake", Calibration(temperature=2.0, bias=1.0))
    res = Pipeline.from_dir(idx, reranker="fake", top_k=5, top_n=3).search("moon tides")
    assert [h.id for h in res.hits] == [h.id for h in default.hits]  # calibration never changes the order
    for h in res.hits:
        assert h.score == pytest.approx(1 / (1 + np.exp(-(h.rerank_score - 1.0) / 2.0)))
    assert res.hits[0].score != pytest.approx(default.hits[0].score)
