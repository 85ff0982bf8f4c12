from __future__ import annotations

import numpy as np
import pytest

from rankfunnel.collection import LocalCollection, open_collection
from rankfunnel.embed import HashingEmbedder, SentenceTransformerEmbedder, embedder_from_name, make_embedder
from rankfunnel.errors import IndexMismatchError, InvalidInputError, ModelNotFoundError, OptionalDependencyError
from rankfunnel.protocols import Embedder
from rankfunnel.types import Document


def test_hashing_embedder_is_deterministic_and_normalised():
    emb = HashingEmbedder(32)
    assert isinstance(emb, Embedder) and emb.name == "hashing-32" and emb.dim == 32
    a = emb.encode(["The cat sat", "the CAT sat", "", "dogs bark loudly"])
    assert a.dtype == np.float32 and a.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert (a[0] == a[1]).all() and not (a[0] == a[3]).all()
    assert (HashingEmbedder(32).encode(["dogs bark loudly"])[0] == a[3]).all()  # stable across instances
    assert emb.encode([]).shape == (0, 32)
    with pytest.raises(InvalidInputError, match="not one string"):
        emb.encode("a string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a str"):
        emb.encode(["ok", 3])  # type: ignore[list-item]
    assert embedder_from_name("hashing-16", 16).dim == 16


@pytest.mark.parametrize("spec,dim", [("hashing", 32), ("hashing-16", 16), ("hashing:8", 8), (" hashing-4 ", 4)])
def test_make_embedder_spells_the_hashing_embedder_every_way(spec, dim):
    emb = make_embedder(spec)
    assert isinstance(emb, HashingEmbedder) and emb.dim == dim and emb.name == f"hashing-{dim}"


def test_make_embedder_loads_models_by_name_and_names_a_missing_one(tmp_path):
    emb = make_embedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    assert isinstance(emb, SentenceTransformerEmbedder) and emb.dim == 384
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        make_embedder(str(tmp_path / "no-model-here"))


def test_embedder_from_name_refuses_another_dimension():
    with pytest.raises(IndexMismatchError, match="rebuild the index"):
        embedder_from_name("hashing-16", 32)


def test_minilm_embedder(minilm_embedder):
    emb = minilm_embedder
    assert isinstance(emb, Embedder)
    assert emb.name == "sentence-transformers/all-MiniLM-L6-v2" and emb.dim == 384
    texts = ["How do I fix a Python list index out of range error?",
             "IndexError: list index out of range happens when the index is past the end of the list.",
             "The manager must approve discounts above the pricing threshold."]
    v = emb.encode(texts, batch_size=2)
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    # reference: sentence-transformers directly (same weights, own normalisation)
    ref = emb._model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(v, ref, atol=1e-5)
    # a 1 MB document is truncated to the model's token limit, so only its start matters
    big = texts[1] + " " + "zebra " * 200_000
    b = emb.encode([big, texts[1] + " " + "zebra " * 300])
    assert b.shape == (2, 384) and float(b[0] @ b[1]) == pytest.approx(1.0, abs=1e-4)
    assert emb.encode([]).shape == (0, 384)


def test_minilm_collection_round_trip(tmp_path, minilm_embedder):
    col = LocalCollection.create(tmp_path / "m", minilm_embedder)
    col.add([Document(id="py", text="IndexError: list index out of range in Python loops"),
             Document(id="fin", text="Discounts above 20 percent need manager approval"),
             Document(id="law", text="The liability clause limits damages to the contract value")])
    assert col.search("why does my python list raise an index error", k=1)[0].id == "py"
    assert col.search("who approves a big discount", k=3, retriever="hybrid")[0].id == "fin"
    col.close()
    again = open_collection(tmp_path / "m", embedder=minilm_embedder)
    assert again.search("contract damages cap", k=1)[0].id == "law"


def test_open_collection_backend_choice(tmp_path, monkeypatch, fake_embedder):
    import builtins

    real_import = builtins.__import__

    def no_milvus(name, *args, **kwargs):
        if name == "rankfunnel.collection.milvus":
            raise ImportError("No module named 'pymilvus'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_milvus)
    for target in ("http://localhost:19530", "https://milvus.example:443", str(tmp_path / "lite.db")):
        with pytest.raises(OptionalDependencyError, match=r"rankfunnel\[milvus\]"):
            open_collection(target, embedder=fake_embedder, create=True)
    with pytest.raises(OptionalDependencyError):
        open_collection(tmp_path / "x", backend="milvus", embedder=fake_embedder)
    # an existing directory whose name ends in .db is still a faiss index directory
    (tmp_path / "dir.db").mkdir()
    col = open_collection(tmp_path / "dir.db", embedder=fake_embedder, create=True)
    assert isinstance(col, LocalCollection) and (tmp_path / "dir.db" / "docs.sqlite").is_file()
    assert isinstance(open_collection(tmp_path / "dir.db"), LocalCollection)
    hnsw = open_collection(tmp_path / "h", embedder=fake_embedder, create=True, index_type="hnsw",
                           ef_search=99)
    assert hnsw.info()["index"]["index_type"] == "hnsw" and hnsw.config.ef_search == 99
    with pytest.raises(InvalidInputError, match="Unknown options"):
        open_collection(tmp_path / "h", colour="blue")
