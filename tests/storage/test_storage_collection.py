from __future__ import annotations

import json

import numpy as np
import pytest
from storage_helpers import DialEmbedder, as_tuples, corpus

from rankfunnel.collection import LocalCollection, open_collection
from rankfunnel.embed import HashingEmbedder
from rankfunnel.errors import DocumentNotFoundError
from rankfunnel.fusion import FusionConfig, rrf
from rankfunnel.protocols import Collection
from rankfunnel.types import Document

QUERIES = ["apple harvest", "python index error", "manager discount approval note 7"]


@pytest.fixture
def col(tmp_path, fake_embedder):
    c = LocalCollection.create(tmp_path / "idx", fake_embedder)
    c.add(corpus(60))
    yield c
    c.close()


def test_protocol_and_basic_reads(col):
    assert isinstance(col, Collection)
    assert len(col) == 60 and col.ids()[:3] == ["d0", "d1", "d2"]
    assert [d.id for d in col.get(["d5", "d1"])] == ["d5", "d1"]
    assert col.get(["d5"])[0].metadata["nested"] == {"k": "v2"}
    info = col.info()
    assert info["documents"] == 60 and info["vectors"] == 60
    assert info["embedder"] == {"name": "hashing-32", "dim": 32}
    manifest = json.loads((col.path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["counts"]["documents"] == 60
    assert manifest["faiss_generation"] == manifest["generation"] == 1


def test_dense_matches_brute_force(col, fake_embedder):
    docs = col.get(col.ids())
    mat = fake_embedder.encode([d.content for d in docs])
    q = fake_embedder.encode([QUERIES[0]])[0]
    scores = mat @ q
    order = sorted(range(len(docs)), key=lambda i: (-scores[i], docs[i].id))[:10]
    hits = col.search(QUERIES[0], k=10)
    assert [h.id for h in hits] == [docs[i].id for i in order]
    assert [h.rank for h in hits] == list(range(1, 11)) and hits[0].stage1_rank == 1
    np.testing.assert_allclose([h.score for h in hits], [scores[i] for i in order], rtol=1e-5)
    assert hits[0].document is not None and hits[0].rerank_score is None


def test_bm25_hits_share_a_term(col):
    hits = col.search("orchard", k=100, retriever="bm25")
    assert len(hits) == 12 and all("orchard" in h.document.text for h in hits)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_reopen_gives_identical_results(tmp_path, fake_embedder):
    path = tmp_path / "idx"
    c = LocalCollection.create(path, fake_embedder)
    c.add(corpus(80))
    c.delete(["d3", "d40"])
    c.add([Document(id="d7", text="replaced apple harvest text")], upsert=True)
    flt = {"lang": "en"}
    before = {(q, r, f is None): as_tuples(c.search(q, k=15, retriever=r, filter=f))
              for q in QUERIES for r in ("dense", "bm25", "hybrid") for f in (None, flt)}
    c.close()
    again = open_collection(path)  # embedder comes from the manifest
    assert len(again) == 78 and "d3" not in again.ids()
    after = {(q, r, f is None): as_tuples(again.search(q, k=15, retriever=r, filter=f))
             for q in QUERIES for r in ("dense", "bm25", "hybrid") for f in (None, flt)}
    assert after == before
    assert again.search_many(QUERIES, k=15, retriever="hybrid") == [again.search(q, k=15, retriever="hybrid")
                                                                     for q in QUERIES]


def test_upsert_and_delete(col):
    old = col.get(["d1"])[0]
    col.add([Document(id="d1", text="zebra crossing", metadata={"lang": "de"}),
             Document(id="new1", text="zebra stripes")], upsert=True)
    assert len(col) == 61 and col.get(["d1"])[0].text == "zebra crossing" != old.text
    assert {h.id for h in col.search("zebra", k=5, retriever="bm25")} == {"d1", "new1"}
    assert col.search("zebra crossing", k=1)[0].id == "d1"
    assert col.info()["vectors"] == 61
    assert col.delete(["d1", "new1", "d1"]) == 2
    assert len(col) == 59 and col.search("zebra", k=5, retriever="bm25") == []
    assert all(h.id not in {"d1", "new1"} for h in col.search("zebra crossing", k=59))
    with pytest.raises(DocumentNotFoundError):
        col.get(["d1"])
    assert col.upsert([Document(id="d1", text="back")]) == 1 and len(col) == 60


def test_filters(col):
    hits = col.search("apple harvest", k=100, filter={"lang": "en"})
    assert len(hits) == 30 and all(h.document.metadata["lang"] == "en" for h in hits)
    both = col.search("note", k=100, retriever="hybrid", filter={"lang": "fr", "topic": 0})
    assert {h.id for h in both} == {f"d{i}" for i in range(0, 60, 10)}
    assert {h.id for h in col.search("note", k=100, filter={"topic": [1, 2]})} == {
        f"d{i}" for i in range(60) if i % 5 in (1, 2)}
    assert len(col.search("note", k=100, filter={"even": True})) == 30
    assert col.search("note", k=100, filter={"topic": True}) == []  # a bool never matches the number 1
    assert col.search("note", k=100, filter={"topic": "1"}) == []  # nor a string
    assert len(col.search("note", k=100, filter={"nested.k": "v1"})) == 20
    assert col.search("note", k=5, filter={"lang": "xx"}) == []
    bm = col.search("orchard", k=100, retriever="bm25", filter={"lang": "en"})
    assert bm and all(h.document.metadata["lang"] == "en" and "orchard" in h.document.text for h in bm)


def test_hybrid_fusion_order_hand_made(tmp_path):
    c = LocalCollection.create(tmp_path / "dial", DialEmbedder())
    pad = "filler words " * 3
    c.add([
        Document(id="A", text=f"@0.9 zebra {pad} alpha beta gamma"),  # dense 1, bm25 3
        Document(id="B", text=f"@0.8 zebra zebra zebra {pad} alpha"),  # dense 2, bm25 1
        Document(id="C", text=f"@0.1 zebra zebra {pad} alpha beta"),  # dense 4, bm25 2
        Document(id="D", text=f"@0.5 {pad} alpha beta gamma delta"),  # dense 3, no bm25 match
    ])
    assert [h.id for h in c.search("zebra", k=4)] == ["A", "B", "D", "C"]
    bm = c.search("zebra", k=4, retriever="bm25")
    assert [h.id for h in bm] == ["B", "C", "A"]
    rrf = FusionConfig(method="rrf", dense_weight=1.0, bm25_weight=1.0)
    hyb = c.search("zebra", k=4, retriever="hybrid", fusion=rrf)
    expected = {"A": 1 / 61 + 1 / 63, "B": 1 / 62 + 1 / 61, "C": 1 / 64 + 1 / 62, "D": 1 / 63}
    assert [h.id for h in hyb] == ["B", "A", "C", "D"]
    assert [h.score for h in hyb] == pytest.approx([expected[i] for i in "BACD"])
    assert hyb == [h for h in c.search("zebra", k=4, retriever="hybrid", fusion=rrf)]
    # the default: min-max normalised scores, 0.8 dense + 0.2 BM25 (dense min-max: A=1, B=.875, D=.5, C=0;
    # BM25 min-max: B=1, C=.5, A=0, D absent=0) -> B .9, A .8, D .4, C .1
    default = c.search("zebra", k=4, retriever="hybrid")
    assert [h.id for h in default] == ["B", "A", "D", "C"]
    dense_only = c.search("zebra", k=4, retriever="hybrid", fusion=FusionConfig(bm25_weight=0.0))
    assert [h.id for h in dense_only] == ["A", "B", "D", "C"]
    lex_only = c.search("zebra", k=4, retriever="hybrid", fusion=FusionConfig(dense_weight=0.0))
    assert [h.id for h in lex_only] == ["B", "C", "A", "D"]
    # convex min-max, weights 0.5/0.5, computed by hand from the raw scores of each side
    raw = {h.id: h.score for h in bm}
    lo, hi = min(raw.values()), max(raw.values())
    dn = {"A": 1.0, "B": 0.875, "D": 0.5, "C": 0.0}
    want = {i: 0.5 * dn[i] + 0.5 * ((raw[i] - lo) / (hi - lo) if i in raw else 0.0) for i in "ABCD"}
    even = FusionConfig(method="minmax", dense_weight=1.0, bm25_weight=1.0)
    mm = c.search("zebra", k=4, retriever="hybrid", fusion=even)
    assert [h.id for h in mm] == sorted(want, key=lambda i: (-want[i], i))
    assert [h.score for h in mm] == pytest.approx(sorted(want.values(), reverse=True), rel=1e-5)
    # the collection-level default is what the eval engineer sweeps
    c2 = LocalCollection.open(tmp_path / "dial", DialEmbedder(), fusion=FusionConfig(dense_weight=0.0))
    assert [h.id for h in c2.search("zebra", k=2, retriever="hybrid")] == ["B", "C"]


def test_hybrid_is_rrf_of_dense_and_bm25_with_deeper_candidates(col):
    k = 5
    dense = [h.id for h in col.search(QUERIES[1], k=3 * k)]
    lex = [h.id for h in col.search(QUERIES[1], k=3 * k, retriever="bm25")]
    want = rrf([dense, lex])[:k]
    plain_rrf = FusionConfig(method="rrf", dense_weight=1, bm25_weight=1)
    got = col.search(QUERIES[1], k=k, retriever="hybrid", fusion=plain_rrf)
    assert [(h.id, pytest.approx(h.score)) for h in got] == [(i, pytest.approx(s)) for i, s in want]


def test_deferred_writes_and_create_or_open(tmp_path):
    emb = HashingEmbedder(16)
    c = open_collection(tmp_path / "x", embedder=emb, create=True)
    with c.deferred_writes():
        c.add(corpus(10))
        c.add(corpus(10, prefix="e"))
        assert json.loads((c.path / "manifest.json").read_text())["faiss_generation"] == 0
    assert json.loads((c.path / "manifest.json").read_text())["faiss_generation"] == 2
    again = open_collection(tmp_path / "x", embedder=emb, create=True)
    assert len(again) == 20
