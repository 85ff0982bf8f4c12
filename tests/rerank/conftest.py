from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bert_reranker(tiny_bert_ce_path):
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(str(tiny_bert_ce_path), device="cpu", batch_size=3)


@pytest.fixture(scope="session")
def zerank_path_or_skip(request):
    try:
        return request.getfixturevalue("tiny_zerank_path")
    except (ImportError, AttributeError, NotImplementedError) as exc:
        pytest.skip(f"tiny zerank builder (rankfunnel.testing.qwen) not available yet: {exc}")
