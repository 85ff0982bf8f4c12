from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bert_reranker(tiny_bert_ce_path):
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(str(tiny_bert_ce_path), device="cpu", batch_size=3)

