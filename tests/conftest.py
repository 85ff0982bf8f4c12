"""Shared fixtures: tiny models built locally (random weights, real tokenizers), never the hub."""

from __future__ import annotations

import copy
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def tiny_zerank_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen3ForCausalLM with the real Qwen3 tokenizer, saved in zerank-2's module layout."""
    from rankfunnel.testing import build_tiny_zerank

    return build_tiny_zerank(tmp_path_factory.mktemp("tiny-zerank"))


@pytest.fixture(scope="session")
def tiny_qwen3_reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen3ForCausalLM in the Qwen3-Reranker convention (yes - no)."""
    from rankfunnel.testing import build_tiny_qwen3_reranker

    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("tiny-qwen3-reranker"))


@pytest.fixture(scope="session")
def tiny_bert_ce_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT cross-encoder with a small WordPiece vocabulary."""
    from rankfunnel.testing import build_tiny_bert_cross_encoder

    return build_tiny_bert_cross_encoder(tmp_path_factory.mktemp("tiny-bert-ce"))


@pytest.fixture(scope="session")
def _minilm_embedder_session():
    """The real all-MiniLM-L6-v2 from its offline package (loaded once per session)."""
    from rankfunnel.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")


@pytest.fixture
def minilm_embedder(_minilm_embedder_session):
    return _minilm_embedder_session


@pytest.fixture
def fake_embedder():
    from rankfunnel.embed import HashingEmbedder

    return HashingEmbedder(dim=32)


@pytest.fixture
def deepcopy_model():
    """Deep-copy a session-scoped model so that a test cannot leak state into another."""
    return copy.deepcopy


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent: the real-data checks need ../shared/datasets beside the repo.")
    return SHARED_DATASETS
