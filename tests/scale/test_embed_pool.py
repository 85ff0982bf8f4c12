"""PooledEmbedder: multi-process encoding gives the same vectors as in-process encoding."""

from __future__ import annotations

import numpy as np
import pytest

from rankfunnel.embed_pool import PooledEmbedder
from rankfunnel.errors import InvalidInputError


def test_refuses_non_sentence_transformer_embedders(fake_embedder):
    with pytest.raises(InvalidInputError, match="SentenceTransformerEmbedder"):
        PooledEmbedder(fake_embedder)


class _StubModel:
    def start_multi_process_pool(self, target_devices=None):
        raise AssertionError("a small call must not start workers")


class _StubEmbedder:
    name, dim, max_seq_length = "stub", 4, 8
    _model = _StubModel()

    def encode(self, texts, *, batch_size=64, show_progress=None):
        return np.ones((len(texts), self.dim), dtype=np.float32) / 2


def test_small_calls_stay_in_process():
    emb = PooledEmbedder(_StubEmbedder(), devices=["cpu"], min_texts=100)
    assert (emb.name, emb.dim) == ("stub", 4)
    np.testing.assert_array_equal(emb.encode(["a b", "c"]), np.ones((2, 4)) / 2)
    assert emb._pool is None
    emb.close()
    with pytest.raises(InvalidInputError):
        PooledEmbedder(_StubEmbedder(), devices=[])


@pytest.mark.slow
def test_two_cpu_workers_match_in_process(minilm_embedder):
    texts = [f"document {i} about topic {i % 7} " * (1 + i % 5) for i in range(64)]
    with PooledEmbedder(minilm_embedder, devices=["cpu", "cpu"], min_texts=1, chunk_size=16) as emb:
        pooled = emb.encode(texts)
    np.testing.assert_allclose(pooled, minilm_embedder.encode(texts), atol=1e-5)


def test_collection_refuses_an_embedder_with_another_name_or_dim(tmp_path, fake_embedder):
    from rankfunnel.collection import open_collection
    from rankfunnel.embed import HashingEmbedder
    from rankfunnel.errors import IndexMismatchError

    col = open_collection(tmp_path / "idx", embedder=fake_embedder, create=True)
    col.embedder = HashingEmbedder(dim=32)  # the same name and dim: accepted
    with pytest.raises(IndexMismatchError, match="built with embedder"):
        col.embedder = HashingEmbedder(dim=16)


def _cli(*args):
    from typer.testing import CliRunner

    from rankfunnel.cli import app

    return CliRunner().invoke(app, list(args))


def test_index_encode_devices_errors_name_the_fix(tmp_path):
    from rankfunnel.ingest import sample_data

    res = _cli("index", str(sample_data()), "--index-dir", str(tmp_path / "a"), "--embedder", "hashing",
               "--encode-devices", " , ")
    assert res.exit_code != 0 and "--encode-devices is empty" in res.output
    res = _cli("index", str(sample_data()), "--index-dir", str(tmp_path / "b"), "--embedder", "hashing",
               "--encode-devices", "cpu,cpu")
    assert res.exit_code != 0 and "SentenceTransformerEmbedder" in res.output


@pytest.mark.slow
def test_cli_index_with_two_encode_workers_equals_in_process(tmp_path):
    from rankfunnel.collection import open_collection
    from rankfunnel.ingest import sample_data

    name = "sentence-transformers/all-MiniLM-L6-v2"
    for sub, extra in (("pooled", ["--encode-devices", "cpu,cpu"]), ("plain", [])):
        res = _cli("index", str(sample_data()), "--index-dir", str(tmp_path / sub), "--embedder", name,
                   "--chunk-size", "40", "--json", *extra)
        assert res.exit_code == 0, res.output
    pooled, plain = open_collection(tmp_path / "pooled"), open_collection(tmp_path / "plain")
    for q in ("refund policy", "who approves a discount above 20%"):
        a = pooled.search(q, k=10, retriever="dense")
        b = plain.search(q, k=10, retriever="dense")
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.stage1_score for h in a], [h.stage1_score for h in b], atol=1e-5)
