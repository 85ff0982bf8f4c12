"""HNSW: recall against exact search, filtered search, tombstones and persistence."""

from __future__ import annotations

import numpy as np
import pytest
from storage_helpers import corpus

from rankfunnel.collection import LocalCollection
from rankfunnel.index.faiss import FaissIndex, IndexConfig

N, D, Q, K = 10_000, 32, 100, 100


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _recall(exact: list[list[tuple[int, float]]], approx: list[list[tuple[int, float]]]) -> float:
    return float(np.mean([len({k for k, _ in a} & {k for k, _ in e}) / max(len(e), 1)
                          for e, a in zip(exact, approx, strict=True)]))


@pytest.fixture(scope="module")
def data():
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # OpenMP threads spin badly on a loaded 2-core machine
    rng = np.random.default_rng(0)
    x, q = _unit(rng, N), _unit(rng, Q)
    keys = np.arange(N, dtype=np.int64) * 3 + 11  # keys are not positions
    flat = FaissIndex(D)
    flat.add(keys, x)
    # ef_construction 64 keeps the build quick; ef_search stays at the library default (256)
    hnsw = FaissIndex(D, IndexConfig(index_type="hnsw", ef_construction=64))
    hnsw.add(keys, x)
    yield x, q, keys, flat, hnsw
    faiss.omp_set_num_threads(threads)


def test_flat_is_exact(data):
    x, q, keys, flat, _ = data
    got = flat.search(q[:5], 10)
    brute = q[:5] @ x.T
    for row, hits in zip(brute, got, strict=True):
        assert [k for k, _ in hits] == [int(keys[i]) for i in np.argsort(-row)[:10]]


def test_hnsw_recall_at_100_vs_exact(data):
    _, q, _, flat, hnsw = data
    recall = _recall(flat.search(q, K), hnsw.search(q, K))
    assert recall >= 0.99, recall


def test_hnsw_filtered_search_keeps_recall(data):
    _, q, keys, flat, hnsw = data
    rng = np.random.default_rng(1)
    small = np.sort(rng.choice(keys, 800, replace=False))  # below exact_filter_max: scored exactly
    assert _recall(flat.search(q, K, small), hnsw.search(q, K, small)) == 1.0
    assert all(k in set(small.tolist()) for k, _ in hnsw.search(q[:3], K, small)[0])
    # force the graph path with a selective filter (10% of the corpus): efSearch grows with 1/selectivity
    wide = np.sort(rng.choice(keys, N // 10, replace=False))
    hnsw.config = IndexConfig(index_type="hnsw", ef_construction=64, exact_filter_max=100)
    try:
        got = hnsw.search(q[:30], K, wide)
    finally:
        hnsw.config = IndexConfig(index_type="hnsw", ef_construction=64)
    assert _recall(flat.search(q[:30], K, wide), got) >= 0.99
    allowed = set(wide.tolist())
    assert all(k in allowed for hits in got for k, _ in hits)


def test_hnsw_tombstones_compaction_and_reopen(tmp_path, fake_embedder):
    path = tmp_path / "h"
    col = LocalCollection.create(path, fake_embedder, index_type="hnsw", ef_search=64, compact_ratio=0.3)
    col.add(corpus(200))
    ref = LocalCollection.create(tmp_path / "f", fake_embedder)  # exact reference with the same documents
    ref.add(corpus(200))
    gone = [f"d{i}" for i in range(0, 200, 4)]  # 25%: tombstones, below the compaction threshold
    col.delete(gone)
    ref.delete(gone)
    assert col._faiss.ntotal == 200 and len(col._faiss) == 150
    for q in ("apple harvest", "python index error"):
        got = col.search(q, k=150)
        assert {h.id for h in got} == set(ref.ids())
        want = [h.score for h in ref.search(q, k=10)]  # scores: the hashing embedder makes ties
        assert [h.score for h in got[:10]] == pytest.approx(want, rel=1e-5)
    col.close()
    again = LocalCollection.open(path, fake_embedder)
    assert again.info()["index"]["index_type"] == "hnsw" and again.info()["index"]["ef_search"] == 64
    assert len(again._faiss) == 150 and not ({h.id for h in again.search("note", k=200)} & set(gone))
    again.add(corpus(60, prefix="x"))
    again.delete([f"x{i}" for i in range(60)])  # tombstones pass 30%: the graph is rebuilt without them
    assert again._faiss.ntotal == len(again) == 150
    assert LocalCollection.open(path, ef_search=300).config.ef_search == 300


def test_auto_index_turns_exact_into_hnsw_at_the_threshold(data):
    x, q, keys, flat, _ = data
    auto = FaissIndex(D, IndexConfig(ef_construction=64, auto_hnsw_min=6_000))  # "auto" is the default
    assert auto.config.index_type == "auto" and auto.kind == "flat"
    auto.add(keys[:5_000], x[:5_000])
    assert auto.kind == "flat"
    auto.remove(keys[:10])  # a flat index deletes in place: nothing to carry into the graph
    auto.add(keys[5_000:], x[5_000:])  # this write crosses 6,000: rebuilt as HNSW from the stored vectors
    assert auto.kind == "hnsw" and auto.ntotal == len(auto) == N - 10
    exact = FaissIndex(D, IndexConfig(index_type="flat"))
    exact.add(keys[10:], x[10:])
    assert _recall(exact.search(q, K), auto.search(q, K)) >= 0.99


def test_auto_collection_switch_is_committed_and_survives_reopen(tmp_path, fake_embedder):
    path = tmp_path / "a"
    col = LocalCollection.create(path, fake_embedder, auto_hnsw_min=150)
    col.add(corpus(100))
    assert col.info()["index"].items() >= {"index_type": "auto", "active": "flat", "auto_hnsw_min": 150}.items()
    ref = LocalCollection.create(tmp_path / "f", fake_embedder, index_type="flat")
    ref.add(corpus(200))
    assert ref.info()["index"]["active"] == "flat"
    col.add(corpus(200)[100:])  # 200 >= 150: this write makes the index HNSW
    col.close()
    again = LocalCollection.open(path, fake_embedder)
    assert again.info()["index"]["active"] == "hnsw" and len(again) == 200
    for query in ("apple harvest", "python index error"):
        want = [h.score for h in ref.search(query, k=10)]
        assert [h.score for h in again.search(query, k=10)] == pytest.approx(want, rel=1e-5)
    again.delete(["d0", "d1"])
    assert {"d0", "d1"}.isdisjoint(h.id for h in again.search("note", k=200))
