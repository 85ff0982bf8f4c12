"""Smoke test of bench/rerank_decoder.py on a tiny shape (slow: builds and loads two models)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_runs_on_tiny_shape(tmp_path):
    path = Path(__file__).resolve().parents[2] / "bench" / "rerank_decoder.py"
    spec = importlib.util.spec_from_file_location("rerank_decoder_bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.run(
        {
            "device": "cpu",
            "shape": "tiny",
            "docs": 3,
            "query_tokens": "15,60",
            "model_dir": str(tmp_path / "m"),
            "out": str(tmp_path / "r.json"),
        }
    )
    assert (tmp_path / "r.json").is_file()
    assert len(res["cases"]) == 2 and res["speedup_vs_sentence_transformers"] > 0
    for case in res["cases"]:
        assert len(case["rows"]) == 4
        assert all(r["max_abs_diff_vs_reference"] < 1e-4 for r in case["rows"])
