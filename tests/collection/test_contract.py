"""The Collection contract: one suite, four backends (MemoryCollection, LocalCollection (faiss),
MilvusCollection on Milvus Lite, and on a `milvus-lite server` reached over gRPC).

Exact search must give the same top-10 everywhere; ranks, ties, CRUD, filters and errors behave the same; and
generated input (hypothesis) either works or raises InvalidInputError / DocumentNotFoundError, never another
exception."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankfunnel.errors import DocumentNotFoundError, InvalidInputError
from rankfunnel.protocols import Collection
from rankfunnel.types import RETRIEVERS, Document
from rankfunnel.validate import MAX_K


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


def test_hybrid_hits_carry_each_retrievers_rank(make_collection, fake_embedder, backend):
    """A fused hit's ``stage1_ranks`` are its ranks in the dense and the BM25 runs it was fused from (the
    adaptive-depth agreement signals read them); a single retriever's hits carry none. Milvus ``hybrid_search``
    fuses inside the server and reports no per-retriever ranks (None)."""
    col = make_collection(fake_embedder)
    docs = sample_docs()
    col.add(docs)
    n = len(docs)
    for q in QUERIES:
        assert all(h.stage1_ranks is None for h in col.search(q, k=5, retriever="dense"))
        hybrid = col.search(q, k=10, retriever="hybrid")
        if hybrid and hybrid[0].stage1_ranks is None:
            assert backend.startswith("milvus"), backend
            continue
        runs = {r: [h.id for h in col.search(q, k=n, retriever=r)] for r in ("dense", "bm25")}
        for h in hybrid:
            assert h.stage1_ranks, h
            for name, rank in h.stage1_ranks.items():
                assert runs[name].index(h.id) + 1 == rank, (q, h.id, name)
            for name in set(runs) - set(h.stage1_ranks):
                assert h.id not in runs[name][: 10 * 3], (q, h.id, name)  # in the fetched depth (3 x k): ranked


def test_long_text_is_refused_not_truncated(make_collection, fake_embedder, backend):
    if backend in ("faiss", "memory"):
        pytest.skip(f"the {backend} backend stores text without a length limit")
    col = make_collection(fake_embedder)
    with pytest.raises(InvalidInputError, match="does not truncate"):
        col.add([Document(id="ok", text="fine"), Document(id="big", text="é" * 40_000)])  # 80 kB of UTF-8
    assert len(col) == 0  # the whole batch was refused before anything was written


# -- ranks, ties, protocol, errors ------------------------------------------------------------------------
def _check_ranked(hits, k):
    assert len(hits) <= k
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    for h in hits:
        assert h.stage1_rank == h.rank and h.stage1_score == h.score and h.rerank_score is None
        assert h.document is not None and h.document.id == h.id and math.isfinite(h.score)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert len({h.id for h in hits}) == len(hits)


def test_protocol_ranks_info_and_context_manager(make_collection, fake_embedder, backend):
    col = make_collection(fake_embedder)
    assert isinstance(col, Collection)
    docs = sample_docs()
    col.add(docs)
    for retriever in RETRIEVERS:
        for k in (1, 3, 50):
            for hits in col.search_many(QUERIES, k=k, retriever=retriever):
                _check_ranked(hits, k)
        assert [h.id for h in col.search(QUERIES[0], k=5, retriever=retriever)] == [
            h.id for h in col.search_many(QUERIES[:1], k=5, retriever=retriever)[0]
        ]
    everything = col.search("discount approval contract python water", k=len(docs) + 10)
    assert len(everything) == len(docs)  # k above the corpus size: every document, no error
    info = col.info()
    assert info["documents"] == len(docs) == len(col)
    assert col.search_many([], k=3) == []
    with col as same:
        assert same is col


def test_ties_are_ordered_by_id(make_collection, fake_embedder):
    col = make_collection(fake_embedder)
    twins = [Document(id=i, text="identical twin text about zebras") for i in ("t3", "t1", "t2")]
    col.add([*twins, Document(id="other", text="zebras alone")])
    for retriever in ("dense", "bm25"):
        hits = col.search("zebras twin", k=4, retriever=retriever)
        assert [h.id for h in hits if h.id != "other"] == ["t1", "t2", "t3"], retriever
        assert hits[0].score == hits[1].score == hits[2].score or hits[0].id == "other"


def test_bad_input_raises_invalid_input_everywhere(make_collection, fake_embedder):
    col = make_collection(fake_embedder)
    with pytest.raises(InvalidInputError, match="is empty: add documents"):
        col.search("anything")
    col.add(sample_docs()[:5])
    bad_searches = [
        ({"query": ""}, "query is empty"),
        ({"query": "ok \ud800"}, "query is not valid Unicode"),
        ({"query": "ok", "k": 0}, "k must be an integer >= 1"),
        ({"query": "ok", "k": MAX_K + 1}, f"k must be at most {MAX_K}"),
        ({"query": "ok", "retriever": "splade"}, "use one of dense, bm25, hybrid"),
        ({"query": "ok", "filter": ["lang"]}, "mapping"),
        ({"query": "ok", "filter": {"a..b": 1}}, "plain metadata key"),
        ({"query": "ok", "filter": {"lang": {"$ne": 1}}}, "use str, int"),
        ({"query": "ok", "filter": {"lang": []}}, "empty"),
    ]
    for kwargs, msg in bad_searches:
        query = kwargs.pop("query")
        with pytest.raises(InvalidInputError, match=msg):
            col.search(query, **kwargs)
    with pytest.raises(InvalidInputError, match="list of queries"):
        col.search_many("one string")
    for verb in ("get", "delete"):
        with pytest.raises(InvalidInputError, match="wrap it as"):
            getattr(col, verb)("d1")
        with pytest.raises(InvalidInputError, match=r"ids\[0\] is not valid Unicode"):
            getattr(col, verb)(["\udcff"])
    bad_docs = [
        (Document(id="", text="x"), "non-empty"),
        (Document(id="\ud800", text="x"), "id is not valid Unicode"),
        (Document(id="a", text="bad \udcff"), "text is not valid Unicode"),
        (Document(id="a", text="x", metadata={"k": float("nan")}), "JSON-serialisable"),
        ("just a string", "Document objects"),
    ]
    for doc, msg in bad_docs:
        with pytest.raises(InvalidInputError, match=msg):
            col.add([Document(id="fine", text="fine"), doc])
    assert len(col) == 5  # nothing of a refused batch was written
    with pytest.raises(InvalidInputError, match="Duplicate ids in one batch"):
        col.add([Document(id="x", text="a"), Document(id="x", text="b")])
    with pytest.raises(InvalidInputError, match="already stored"):
        col.add([col.get([col.ids()[0]])[0]])


def test_memory_matches_faiss_exactly(tmp_path, fake_embedder):
    """The fake is a faithful stand-in: the same ids, order and scores as a flat faiss collection."""
    from rankfunnel.collection import LocalCollection, MemoryCollection

    docs = sample_docs()
    mem = MemoryCollection(fake_embedder, docs=docs)
    with LocalCollection.create(tmp_path / "idx", fake_embedder, index_type="flat") as local:
        local.add(docs)
        for retriever in RETRIEVERS:
            for flt in (None, {"even": True}, {"domain": ["finance", "legal"]}, {"nested.bucket": 0}):
                got = mem.search_many(QUERIES, k=7, retriever=retriever, filter=flt)
                want = local.search_many(QUERIES, k=7, retriever=retriever, filter=flt)
                for g, w in zip(got, want, strict=True):
                    assert [h.id for h in g] == [h.id for h in w], (retriever, flt)
                    np.testing.assert_allclose([h.score for h in g], [h.score for h in w], rtol=1e-5, atol=1e-6)
        mem.delete(["code-01"])
        local.delete(["code-01"])
        mem.upsert([Document(id="fin-01", text="replaced discount text")])
        local.upsert([Document(id="fin-01", text="replaced discount text")])
        for retriever in RETRIEVERS:
            assert [h.id for h in mem.search("discount", k=10, retriever=retriever)] == [
                h.id for h in local.search("discount", k=10, retriever=retriever)
            ]


# -- generated input: it works, or it raises InvalidInputError (or DocumentNotFoundError for unknown ids) ----
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.lists(st.one_of(st.text(max_size=8), surrogates, st.sampled_from(["\x00", "\n", " ", "é", "\u2028"])),
                 max_size=6).map("".join)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.floats(allow_nan=True), texts)
EXPECTED = (InvalidInputError, DocumentNotFoundError)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def filled(make_collection, fake_embedder):
    col = make_collection(fake_embedder)
    col.add(sample_docs())
    return col


@PROPERTY
@given(query=texts, k=st.integers(-2, MAX_K + 2), retriever=st.sampled_from([*RETRIEVERS, "nope"]),
       flt=st.one_of(st.none(), st.dictionaries(st.sampled_from(["domain", "even", "n", "a.b", "x y"]), json_scalars,
                                                max_size=2)))
def test_any_search_works_or_is_invalid_input(filled, query, k, retriever, flt):
    try:
        hits = filled.search(query, k=k, retriever=retriever, filter=flt)
    except InvalidInputError:
        return
    _check_ranked(hits, k)


@PROPERTY
@given(doc_id=texts, title=texts, text=texts, meta=st.dictionaries(texts, json_scalars, max_size=2))
def test_any_document_round_trips_or_is_invalid_input(filled, doc_id, title, text, meta):
    doc = Document(id=doc_id, title=title, text=text, metadata=meta)
    try:
        filled.upsert([doc])
    except InvalidInputError:
        with pytest.raises(EXPECTED):  # a refused document was not stored (or its id is itself invalid)
            filled.get([doc_id])
        return
    assert filled.get([doc_id]) == [doc]
    assert filled.delete([doc_id]) == 1


@PROPERTY
@given(ids=st.lists(texts, max_size=4))
def test_any_ids_get_and_delete_raise_only_expected_errors(filled, ids):
    known = set(filled.ids())
    for verb in ("get", "delete"):
        try:
            out = getattr(filled, verb)([i for i in ids if i not in known])
        except EXPECTED:
            continue
        assert out in ([], 0)

