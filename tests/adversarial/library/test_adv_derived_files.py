"""Class 6 of issue 14: every derived file of a local index that parses but disagrees with docs.sqlite is rebuilt.

For each derived file (vectors.faiss, manifest.json and every file of bm25/) the index is damaged in ways that
still parse (another dimension, missing / extra / duplicate keys, wrong vectors, arrays of another length,
shape or dtype, JSON of another type), then reopened: every retriever must return exactly what the intact index
returned, and the file must have been rewritten. Generated arrays (hypothesis) cover the numpy files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rankfunnel.collection import LocalCollection
from rankfunnel.embed import HashingEmbedder
from rankfunnel.ingest import index_source, sample_data

DIM = 16
QUERIES = ["boiling point of water", "refund policy", "python list comprehension"]
RETRIEVERS = ("dense", "bm25", "hybrid")


def _results(col: LocalCollection) -> list[list[tuple[str, float]]]:
    return [
        [(h.id, round(h.score, 5)) for h in col.search(q, k=5, retriever=r)] for r in RETRIEVERS for q in QUERIES
    ]


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[tuple[str, float]]]]:
    path = tmp_path_factory.mktemp("derived") / "idx"
    col = LocalCollection.create(path, HashingEmbedder(DIM))
    index_source(col, sample_data(), show_progress=False)
    expected = _results(col)  # also writes bm25/
    col.close()
    assert (path / "bm25" / "keys.npy").is_file() and (path / "vectors.faiss").is_file()
    return path, expected


def _flat(keys: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(keys, dtype=np.int64))
    return index


def _stored(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = faiss.read_index(str(path / "vectors.faiss"))
    keys = faiss.vector_to_array(raw.id_map).astype(np.int64)
    return keys, raw.reconstruct_batch(keys)


def _faiss_other_dim(p: Path) -> None:
    keys, _ = _stored(p)
    faiss.write_index(_flat(keys, np.ones((len(keys), DIM * 2), dtype=np.float32)), str(p / "vectors.faiss"))


def _faiss_half(p: Path) -> None:
    keys, vecs = _stored(p)
    faiss.write_index(_flat(keys[::2], vecs[::2]), str(p / "vectors.faiss"))


def _faiss_wrong_vectors(p: Path) -> None:
    keys, vecs = _stored(p)
    faiss.write_index(_flat(keys, np.roll(vecs, 1, axis=0)), str(p / "vectors.faiss"))


def _faiss_duplicate_keys(p: Path) -> None:
    keys, vecs = _stored(p)
    doubled = _flat(np.concatenate([keys, keys[:5]]), np.concatenate([vecs, vecs[:5]]))
    faiss.write_index(doubled, str(p / "vectors.faiss"))


def _faiss_not_id_mapped(p: Path) -> None:
    _, vecs = _stored(p)
    plain = faiss.IndexFlatIP(DIM)
    plain.add(np.ascontiguousarray(vecs))
    faiss.write_index(plain, str(p / "vectors.faiss"))


def _write(rel: str, content: bytes) -> Callable[[Path], None]:
    return lambda p: (p / rel).write_bytes(content)


def _json_edit(rel: str, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(p: Path) -> None:
        data = json.loads((p / rel).read_text())
        (p / rel).write_text(json.dumps(edit(data)))

    return apply


def _npy_edit(rel: str, edit: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def apply(p: Path) -> None:
        arr = np.load(p / rel)
        np.save(p / rel, edit(arr))

    return apply


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "vectors.faiss: another dimension": _faiss_other_dim,
    "vectors.faiss: half the vectors": _faiss_half,
    "vectors.faiss: vectors under the wrong keys": _faiss_wrong_vectors,
    "vectors.faiss: duplicate keys": _faiss_duplicate_keys,
    "vectors.faiss: not an IndexIDMap2": _faiss_not_id_mapped,
    "vectors.faiss: garbage": _write("vectors.faiss", b"\x00" * 100),
    "vectors.faiss: empty": _write("vectors.faiss", b""),
    "manifest.json: a list": _write("manifest.json", b"[1, 2]"),
    "manifest.json: null": _write("manifest.json", b"null"),
    "manifest.json: another embedder dimension": _json_edit(
        "manifest.json", lambda m: {**m, "embedder": {"name": m["embedder"]["name"], "dim": DIM * 2}}
    ),
    "manifest.json: generation as text": _json_edit("manifest.json", lambda m: {**m, "faiss_generation": "1"}),
    "bm25/keys.npy: half the keys": _npy_edit("bm25/keys.npy", lambda a: a[::2]),
    "bm25/keys.npy: float keys": _npy_edit("bm25/keys.npy", lambda a: a.astype(np.float64) + 0.5),
    "bm25/keys.npy: two-dimensional": _npy_edit("bm25/keys.npy", lambda a: a.reshape(-1, 1)),
    "bm25/keys.npy: other documents": _npy_edit("bm25/keys.npy", lambda a: a + 1000),
    "bm25/keys.npy: not numpy": _write("bm25/keys.npy", b"not an array"),
    "bm25/state.json: a list": _write("bm25/state.json", b"[]"),
    "bm25/state.json: marked empty": _json_edit("bm25/state.json", lambda s: {**s, "empty": True}),
    "bm25/state.json: k1 as text": _json_edit("bm25/state.json", lambda s: {**s, "k1": "high"}),
    "bm25/params.index.json: fewer documents": _json_edit(
        "bm25/params.index.json", lambda s: {**s, "num_docs": 3}
    ),
    "bm25/vocab.index.json: ids past the matrix": _json_edit(
        "bm25/vocab.index.json", lambda v: {k: i + 10_000 for k, i in v.items()}
    ),
    "bm25/vocab.index.json: a list": _write("bm25/vocab.index.json", b"[1, 2, 3]"),
    "bm25/indptr.csc.index.npy: truncated": _npy_edit("bm25/indptr.csc.index.npy", lambda a: a[: len(a) // 2]),
    "bm25/data.csc.index.npy: shorter": _npy_edit("bm25/data.csc.index.npy", lambda a: a[:-7]),
    "bm25/indices.csc.index.npy: rows past the corpus": _npy_edit(
        "bm25/indices.csc.index.npy", lambda a: a + 500
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_a_disagreeing_derived_file_is_rebuilt(name: str, intact, tmp_path: Path) -> None:
    source, expected = intact
    path = tmp_path / "idx"
    shutil.copytree(source, path)
    CORRUPTIONS[name](path)
    col = LocalCollection.open(path)
    assert _results(col) == expected
    col.close()
    rel = name.split(":")[0]
    if rel != "manifest.json":  # the damaged file was written back in its good form
        again = LocalCollection.open(path)
        assert _results(again) == expected
        again.close()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["embedder"] == {"name": f"hashing-{DIM}", "dim": DIM}


NPY_FILES = ["bm25/keys.npy", "bm25/indptr.csc.index.npy", "bm25/data.csc.index.npy", "bm25/indices.csc.index.npy"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rel=st.sampled_from(NPY_FILES),
    arr=hnp.arrays(
        dtype=st.sampled_from([np.int64, np.int32, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=200),
        elements={"allow_nan": False, "allow_infinity": False, "min_value": -5, "max_value": 5_000},
    ),
)
def test_any_parseable_array_in_bm25_is_checked(rel: str, arr: np.ndarray, intact, tmp_path: Path) -> None:
    import tempfile

    source, expected = intact
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        path = Path(tmp) / "idx"
        shutil.copytree(source, path)
        np.save(path / rel, arr)
        col = LocalCollection.open(path)
        bm25 = [[(h.id, round(h.score, 5)) for h in col.search(q, k=5, retriever="bm25")] for q in QUERIES]
        assert bm25 == expected[len(QUERIES) : 2 * len(QUERIES)]
        col.close()
