"""Every bad input gets a rankfunnel error whose message names the fix, never a dependency traceback."""

from __future__ import annotations

import pytest
from storage_helpers import corpus

from rankfunnel.collection import LocalCollection, open_collection
from rankfunnel.embed import HashingEmbedder
from rankfunnel.errors import (
    DocumentNotFoundError,
    IndexCorruptError,
    IndexMismatchError,
    InvalidInputError,
    RankfunnelError,
)
from rankfunnel.types import Document


@pytest.fixture
def col(tmp_path, fake_embedder):
    c = LocalCollection.create(tmp_path / "idx", fake_embedder)
    c.add(corpus(12))
    return c


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
@pytest.mark.parametrize("retriever", ["dense", "bm25", "hybrid"])
def test_empty_query(col, query, retriever):
    with pytest.raises(InvalidInputError, match="query is empty"):
        col.search(query, retriever=retriever)
    with pytest.raises(InvalidInputError, match=r"queries\[1\] is empty"):
        col.search_many(["fine", query], retriever=retriever)


def test_bad_k_retriever_filter(col):
    for k in (0, -3, 2.5, True):
        with pytest.raises(InvalidInputError, match="k must be"):
            col.search("apple", k=k)
    with pytest.raises(InvalidInputError, match="dense, bm25, hybrid"):
        col.search("apple", retriever="splade")
    with pytest.raises(InvalidInputError, match="mapping"):
        col.search("apple", filter=["lang", "en"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="plain metadata key"):
        col.search("apple", filter={"x') OR 1=1 --": 1})
    with pytest.raises(InvalidInputError, match="use str, int"):
        col.search("apple", filter={"lang": {"$ne": "en"}})
    with pytest.raises(InvalidInputError, match="list of queries"):
        col.search_many("apple")  # type: ignore[arg-type]


def test_empty_corpus(tmp_path, fake_embedder):
    c = LocalCollection.create(tmp_path / "empty", fake_embedder)
    for retriever in ("dense", "bm25", "hybrid"):
        with pytest.raises(InvalidInputError, match="is empty: add documents"):
            c.search("anything", retriever=retriever)
    c.add(corpus(1))
    c.delete(["d0"])
    with pytest.raises(InvalidInputError, match="is empty"):
        c.search("anything")


@pytest.mark.parametrize("retriever", ["dense", "hybrid"])
def test_top_k_larger_than_corpus_returns_everything(col, retriever):
    hits = col.search("apple note", k=1000, retriever=retriever)
    assert sorted(h.id for h in hits) == sorted(col.ids())
    assert [h.rank for h in hits] == list(range(1, 13))
    assert len(col.search("orchard", k=1000, retriever="bm25")) == 3  # only documents sharing a term
    assert len(col.search("apple", k=1000, filter={"lang": "en"})) == 6


def test_duplicate_ids_in_one_batch(col):
    with pytest.raises(InvalidInputError, match=r"Duplicate ids in one batch: \['x'\]"):
        col.add([Document(id="x", text="a"), Document(id="y", text="b"), Document(id="x", text="c")])
    with pytest.raises(InvalidInputError, match="Duplicate"):
        col.add([Document(id="x", text="a"), Document(id="x", text="c")], upsert=True)
    assert len(col) == 12


def test_existing_id_needs_upsert(col):
    with pytest.raises(InvalidInputError, match="upsert=True"):
        col.add([Document(id="new", text="a"), Document(id="d3", text="b")])
    assert len(col) == 12 and "new" not in col.ids()  # nothing half-written


def test_delete_unknown_ids_changes_nothing(col):
    with pytest.raises(DocumentNotFoundError, match=r"\['nope', 'zzz'\]") as err:
        col.delete(["d1", "nope", "d2", "zzz"])
    assert isinstance(err.value, KeyError) and "Nothing was deleted" in str(err.value)
    assert len(col) == 12 and {"d1", "d2"} <= set(col.ids())
    with pytest.raises(DocumentNotFoundError, match="nope"):
        col.get(["d1", "nope"])


def test_invalid_documents(col):
    cases = [
        ([Document(id="", text="x")], "non-empty"),
        ([Document(id="a", text=None)], "text must be a string"),  # type: ignore[arg-type]
        (["just a string"], "Document objects"),
        ([{"text": "no id"}], "no 'id'"),
        ([Document(id="a", text="x", metadata={"when": object()})], "JSON-serialisable"),
        ([Document(id="a", text="x", metadata={"f": float("nan")})], "JSON-serialisable"),
        ([Document(id="a", text="bad \udcff surrogate")], "not valid Unicode"),  # undecodable bytes
    ]
    for docs, msg in cases:
        with pytest.raises(InvalidInputError, match=msg):
            col.add(docs)
    assert len(col) == 12
    assert col.add([{"id": "m", "title": "mapping", "text": "dicts work too"}]) == 1


def test_one_megabyte_document(col):
    big = ("tokenless " * 10) + " ".join(f"w{i % 5000}" for i in range(180_000)) + " needleword"
    assert len(big) > 1_000_000
    col.add([Document(id="big", text=big)])
    assert col.search("needleword", k=3, retriever="bm25")[0].id == "big"
    assert "big" in {h.id for h in col.search("w17 w42", k=13)}
    assert len(col.get(["big"])[0].text) == len(big)


def test_embedder_mismatch(tmp_path, col):
    col.close()
    with pytest.raises(IndexMismatchError, match=r"built with embedder 'hashing-32' \(dimension 32\)"):
        LocalCollection.open(col.path, HashingEmbedder(16))

    class Renamed(HashingEmbedder):
        pass

    other = Renamed(32)
    other.name = "some/other-model"
    with pytest.raises(IndexMismatchError, match="hashing-32"):
        open_collection(col.path, embedder=other)
    assert len(LocalCollection.open(col.path, HashingEmbedder(32))) == 12


def test_bad_directories(tmp_path, fake_embedder):
    with pytest.raises(InvalidInputError, match="not an index directory"):
        LocalCollection.open(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="not an index directory"):
        open_collection(tmp_path / "missing2")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("hi")
    with pytest.raises(InvalidInputError, match="not an empty directory"):
        LocalCollection.create(tmp_path / "busy", fake_embedder)
    LocalCollection.create(tmp_path / "ok", fake_embedder)
    with pytest.raises(InvalidInputError, match="already holds an index"):
        LocalCollection.create(tmp_path / "ok", fake_embedder)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "docs.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexCorruptError, match="not a readable SQLite"):
        LocalCollection.open(tmp_path / "junk")
    with pytest.raises(InvalidInputError, match="backend"):
        open_collection(tmp_path / "ok", backend="qdrant")
    with pytest.raises(InvalidInputError, match="index_type"):
        LocalCollection.create(tmp_path / "h", fake_embedder, index_type="ivf")


def test_all_errors_are_rankfunnel_errors():
    for cls in (InvalidInputError, DocumentNotFoundError, IndexMismatchError, IndexCorruptError):
        assert issubclass(cls, RankfunnelError)


@pytest.mark.parametrize("retriever", ["dense", "bm25", "hybrid"])
def test_lone_surrogates_are_invalid_input_naming_the_field(col, retriever):
    with pytest.raises(InvalidInputError, match="query is not valid Unicode"):
        col.search("apple \ud800", retriever=retriever)
    with pytest.raises(InvalidInputError, match="filter value for 'lang' is not valid Unicode"):
        col.search("apple", retriever=retriever, filter={"lang": "e\udcffn"})
    with pytest.raises(InvalidInputError, match=r"ids\[0\] is not valid Unicode"):
        col.get(["\ud800"])
    with pytest.raises(InvalidInputError, match=r"ids\[0\] is not valid Unicode"):
        col.delete(["\ud800"])
    with pytest.raises(InvalidInputError, match="id is not valid Unicode"):
        col.add([Document(id="\ud800", text="x")])
    assert len(col) == 12
