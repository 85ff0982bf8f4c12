"""One suite, three backends: LocalCollection (faiss), MilvusCollection on Milvus Lite, and on a
`milvus-lite server` reached over gRPC. Exact search must give the same top-10 everywhere."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from rankfunnel.errors import DocumentNotFoundError, InvalidInputError
from rankfunnel.types import Document


def sample_docs() -> list[Document]:
    lines = resources.files("rankfunnel").joinpath("data/sample_corpus.jsonl").read_text().splitlines()
    docs = []
    for i, line in enumerate(lines):
        row = json.loads(line)
        meta = dict(row.get("metadata") or {})
        meta.update({"n": i, "even": i % 2 == 0, "nested": {"bucket": i % 3}})
        docs.append(Document(id=row["id"], title=row.get("title", ""), text=row["text"], metadata=meta))
    return docs


QUERIES = [
    "Who has to approve a 15% discount?",
    "list index out of range in a Python loop",
    "water boiling point at altitude",
    "terminate the contract after a breach",
    "floor price",
]


def _check_exact_parity(col, embedder, backend):
    docs = sample_docs()
    assert col.add(docs) == len(docs)
    vecs = embedder.encode([d.content for d in docs])
    qv = embedder.encode(QUERIES)
    ref = qv @ vecs.T  # brute-force reference, independent of any index
    for qi, hits in enumerate(col.search_many(QUERIES, k=10)):
        expected = [docs[j].id for j in np.argsort(-ref[qi], kind="stable")[:10]]
        assert [h.id for h in hits] == expected, backend
        np.testing.assert_allclose([h.score for h in hits], np.sort(ref[qi])[::-1][:10], atol=1e-4)
        assert [h.rank for h in hits] == list(range(1, 11))
        assert all(h.document is not None and h.document.id == h.id for h in hits)
    # filtered exact search: same top-10 within the subset
    allowed = [j for j, d in enumerate(docs) if d.metadata.get("domain") == "finance"]
    for qi, hits in enumerate(col.search_many(QUERIES, k=10, filter={"domain": "finance"})):
        order = sorted(allowed, key=lambda j: -ref[qi, j])[:10]
        assert [h.id for h in hits] == [docs[j].id for j in order]


def test_exact_dense_top10_matches_across_backends(make_collection, random_embedder, backend):
    """Milvus FLAT (brute force) returns exactly the faiss flat top-10 and scores (and numpy's)."""
    _check_exact_parity(make_collection(random_embedder), random_embedder, backend)


@pytest.mark.slow
def test_exact_parity_with_minilm(make_collection, minilm_embedder, backend):
    """The same with the real all-MiniLM-L6-v2 vectors (slow on CPU: about 1 min per backend under load)."""
    _check_exact_parity(make_collection(minilm_embedder), minilm_embedder, backend)


def test_crud_semantics(make_collection, fake_embedder):
    col = make_collection(fake_embedder)
    docs = [
        Document(id=f"d{i}", title="T" if i % 2 else "", text=f"text number {i} apples", metadata={"i": i})
        for i in range(7)
    ]
    assert col.add(docs) == 7 and len(col) == 7
    assert sorted(col.ids()) == sorted(d.id for d in docs)
    assert col.get(["d3", "d0"]) == [docs[3], docs[0]]  # round trip: title, text, metadata intact
    with pytest.raises(InvalidInputError):
        col.add([Document(id="d1", text="again")])
    with pytest.raises(DocumentNotFoundError):
        col.get(["d1", "nope"])
    new = Document(id="d1", text="replaced pears", metadata={"i": 100})
    assert col.add([new], upsert=True) == 1
    assert col.get(["d1"]) == [new] and len(col) == 7
    with pytest.raises(DocumentNotFoundError):
        col.delete(["d2", "missing"])  # all or none
    assert len(col) == 7
    assert col.delete(["d2", "d5"]) == 2
    assert len(col) == 5 and "d2" not in col.ids()
    assert {h.id for h in col.search("apples", k=10)} == {"d0", "d3", "d4", "d6"} | {"d1"}
    assert "d1" in {h.id for h in col.search("pears", k=10, retriever="bm25")}
    assert "d2" not in {h.id for h in col.search("apples", k=10, retriever="hybrid")}


def test_filters_and_retrievers(make_collection, fake_embedder):
    col = make_collection(fake_embedder)
    docs = sample_docs()
    col.add(docs)
    by_id = {d.id: d for d in docs}
    for retriever in ("dense", "bm25", "hybrid"):
        for flt in ({"even": True}, {"nested.bucket": 2}, {"domain": ["finance", "legal"]}, {"n": 3}):
            hits = col.search("discount approval contract", k=20, retriever=retriever, filter=flt)
            for h in hits:
                md = by_id[h.id].metadata
                key, value = next(iter(flt.items()))
                actual = md["nested"]["bucket"] if key == "nested.bucket" else md[key]
                assert actual in value if isinstance(value, list) else actual == value, (retriever, flt, h.id)
        bm = col.search("discount", k=50, retriever="bm25")
        assert bm and all("discount" in by_id[h.id].content.lower() for h in bm)
    # a value that tries to break out of the expression matches nothing (it is a literal, not code)
    evil = 'x" or metadata["domain"] != "'
    assert col.search("discount", k=5, filter={"domain": evil}) == []


def test_long_text_is_refused_not_truncated(make_collection, fake_embedder, backend):
    if backend == "faiss":
        pytest.skip("the faiss backend stores text in SQLite without a length limit")
    col = make_collection(fake_embedder)
    with pytest.raises(InvalidInputError, match="does not truncate"):
        col.add([Document(id="ok", text="fine"), Document(id="big", text="é" * 40_000)])  # 80 kB of UTF-8
    assert len(col) == 0  # the whole batch was refused before anything was written
