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
