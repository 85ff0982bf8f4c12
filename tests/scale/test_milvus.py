"""Milvus-only behaviour: reopening, embedder checks, BM25 fallback, fusion paths, safe filters, errors."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from rankfunnel.collection.milvus import MilvusBackendError, MilvusCollection
from rankfunnel.collection.milvus_support import filter_expression, quote
from rankfunnel.errors import IndexMismatchError, InvalidInputError
from rankfunnel.fusion import FusionConfig
from rankfunnel.protocols import Collection
from rankfunnel.types import Document

DOCS = [
    Document(id=f"d{i}", text=t, metadata={"lang": "en" if i % 2 else "de"})
    for i, t in enumerate(
        [
            "the cat sat on the mat",
            "dogs run fast",
            "a cat and a dog",
            "quantum physics lecture",
            "cat cat cat",
            "stock market report",
            "cats and kittens purr",
        ]
    )
]


def test_filter_expression_escapes_and_shapes():
    assert filter_expression(None) == "" and filter_expression({}) == ""
    assert filter_expression({"lang": "en"}) == 'metadata["lang"] == "en"'
    assert filter_expression({"a.b": 1, "ok": True}) == 'metadata["a"]["b"] == 1 and metadata["ok"] == true'
    assert filter_expression({"y": [2023, None]}) == '(metadata["y"] == 2023 or metadata["y"] is null)'
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert filter_expression({"k": 'v"]'}) == 'metadata["k"] == "v\\"]"'
    # keys are plain metadata keys (rankfunnel.validate.check_filter), the same rule as the faiss backend
    bad_filters = ({'k"]': 1}, {"x": {"nested": 1}}, {"x": []}, {"x": float("nan")}, {"": 1}, {"x": "bell\x07"},
                   {"x": "\ud800"})
    for bad in bad_filters:
        with pytest.raises(InvalidInputError):
            filter_expression(bad)


def test_reopen_uses_recorded_embedder_and_refuses_another(tmp_path, fake_embedder):
    from rankfunnel.embed import HashingEmbedder

    uri = tmp_path / "col"  # a folder: the Lite file is col/milvus.db
    with MilvusCollection(uri, embedder=fake_embedder, create=True) as col:
        col.add(DOCS)
        first = [h.id for h in col.search("cat", k=3)]
    with MilvusCollection(uri) as col:  # no embedder: rebuilt from the recorded name
        assert col.embedder.name == fake_embedder.name
        assert [h.id for h in col.search("cat", k=3)] == first
        assert col.info()["documents"] == len(DOCS) and col.info()["bm25"] == "milvus"
    with pytest.raises(IndexMismatchError):
        MilvusCollection(uri, embedder=HashingEmbedder(dim=16))
    with pytest.raises(InvalidInputError, match="no collection"):
        MilvusCollection(uri, collection="other")
    with pytest.raises(InvalidInputError, match="No Milvus Lite database"):
        MilvusCollection(tmp_path / "missing.db")
    with pytest.raises(InvalidInputError, match="collection name"):
        MilvusCollection(uri, collection="bad-name; drop")


def test_open_collection_routes_to_milvus(tmp_path, fake_embedder):
    from rankfunnel.collection import open_collection

    col = open_collection(
        tmp_path / "x.db", embedder=fake_embedder, create=True, index_type="hnsw", ef_search=64
    )
    try:
        assert isinstance(col, MilvusCollection) and col.info()["index"] == "HNSW"
        assert isinstance(col, Collection)  # the runtime-checkable protocol
        col.add(DOCS)
        assert col.search("stock market", k=1, retriever="hybrid")[0].id == "d5"
    finally:
        col.close()


def test_local_bm25_fallback_follows_writes(tmp_path, fake_embedder):
    """bm25='local' (servers without BM25 functions) ranks from the text in Milvus and sees every write."""
    import bm25s

    col = MilvusCollection(tmp_path / "f.db", embedder=fake_embedder, create=True, bm25="local")
    col.add(DOCS)
    hits = col.search("cat", k=10, retriever="bm25")
    tokens = bm25s.tokenize([d.content for d in DOCS], stopwords="en", show_progress=False)
    ref = bm25s.BM25()
    ref.index(tokens, show_progress=False)
    scores = ref.get_scores(["cat"])
    expected = [DOCS[i].id for i in sorted(range(len(DOCS)), key=lambda i: -scores[i]) if scores[i] > 0]
    assert [h.id for h in hits] == expected
    col.delete(["d4"])
    col.add([Document(id="new", text="a cat", metadata={"lang": "en"})])
    ids = [h.id for h in col.search("cat", k=10, retriever="bm25")]
    assert "d4" not in ids and "new" in ids
    assert {h.id for h in col.search("cat", k=10, retriever="bm25", filter={"lang": "de"})} <= {
        "d0",
        "d2",
        "d6",
    }
    assert [h.id for h in col.search("cat", k=3, retriever="hybrid")]
    col.close()


def test_fusion_paths_agree(tmp_path, fake_embedder):
    """Native hybrid_search (RRF in Milvus) and client-side fusion of the two Milvus runs agree."""
    col = MilvusCollection(tmp_path / "h.db", embedder=fake_embedder, create=True)
    col.add(DOCS)
    rrf = FusionConfig(method="rrf", dense_weight=1.0, bm25_weight=1.0)
    native = col.search("cat dog", k=5, retriever="hybrid", fusion=rrf)
    client_side = col.search(
        "cat dog", k=5, retriever="hybrid", fusion=FusionConfig(method="rrf", dense_weight=1.0001, bm25_weight=1.0)
    )
    # same fused scores (RRF k=60) and the same top-3 set; exact ties may be ordered differently
    assert {h.id for h in native[:3]} == {h.id for h in client_side[:3]}
    assert [h.score for h in native] == pytest.approx([h.score for h in client_side], rel=1e-3)
    minmax = col.search("cat dog", k=5, retriever="hybrid", fusion=FusionConfig(method="minmax"))
    assert len(minmax) == 5 and minmax[0].score >= minmax[-1].score
    col.close()


def test_unreachable_server_is_a_plain_error(fake_embedder):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(MilvusBackendError, match="Cannot connect to Milvus"):
        MilvusCollection(f"http://127.0.0.1:{port}", embedder=fake_embedder, create=True, timeout=2)
    assert time.monotonic() - t0 < 30
