"""Builders of tiny local models for tests and speed benchmarks (random weights, real tokenizers).

- :func:`build_tiny_zerank` / :func:`build_tiny_qwen3_reranker` / :func:`build_qwen3_shaped` (``testing.qwen``)
- :func:`build_tiny_bert_cross_encoder` / :func:`build_minilm_cross_encoder` (``testing.bert``)
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # lazy: importing torch/transformers only when a builder is used
    if name in {"build_tiny_zerank", "build_tiny_qwen3_reranker", "build_qwen3_shaped"}:
        from rankfunnel.testing import qwen

        return getattr(qwen, name)
    if name in {"build_tiny_bert_cross_encoder", "build_minilm_cross_encoder"}:
        from rankfunnel.testing import bert

        return getattr(bert, name)
    raise AttributeError(name)
