from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.encoder_fast import FastEncoderReranker, default_route, token_budget_batches

QUERY = "python list index out of range error"
_TEXT = ("the python error list index out of range cancer risk patients court contract clause discount "
         "threshold manager approval pricing rule gene protein cell study results data method")
WORDS = _TEXT.split()


def _docs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 60)))) for _ in range(n)]


@pytest.mark.parametrize("lengths,budget,rows", [([], 10, 4), ([7], 3, 4), ([5, 1, 3, 2, 9, 9, 1], 12, 3),
                                                 (list(range(1, 30)), 40, 64)])
def test_token_budget_batches_cover_every_index_once(lengths, budget, rows):
    batches = token_budget_batches(lengths, budget, rows)
    flat = sorted(int(i) for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= rows
        if len(b) > 1:
            assert max(lengths[i] for i in b) * len(b) <= budget


def test_fp32_route_equals_reference(tiny_bert_ce_path, bert_reranker):
    fast = FastEncoderReranker(str(tiny_bert_ce_path), route="torch-fp32", token_budget=256, batch_size=5)
    docs = _docs(23)
    ref = bert_reranker.score(QUERY, docs)
    got = fast.score(QUERY, docs)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert fast.score(QUERY, []).shape == (0,)
    assert fast.rank(QUERY, docs, top_n=3)[0][0] == int(np.argmax(ref))


@pytest.mark.parametrize("route", ["torch-int8", "torch-bf16", "onnx-int8"])
def test_reduced_precision_routes_agree_with_fp32(tiny_bert_ce_path, tmp_path, route):
    docs = _docs(40, seed=1)
    ref = FastEncoderReranker(str(tiny_bert_ce_path), route="torch-fp32").score(QUERY, docs)
    fast = FastEncoderReranker(str(tiny_bert_ce_path), route=route, cache_dir=tmp_path)
    got = fast.score(QUERY, docs)
    rho = spearmanr(got, ref)[0]
    assert rho > 0.9, f"{route}: Spearman {rho:.3f} against fp32"
    assert np.abs(got - ref).max() < 0.1 * np.ptp(ref) + 0.05


def test_onnx_export_is_cached_once(tiny_bert_ce_path, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_ce_path, model)
    FastEncoderReranker(str(model), route="onnx-fp32")
    files = list((model / ".rankfunnel-onnx").glob("*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = FastEncoderReranker(str(model), route="onnx-fp32")
    assert files[0].stat().st_mtime_ns == mtime  # loaded from the cache, not exported again
    assert again.score(QUERY, ["python error"]).shape == (1,)


def test_bad_arguments(tiny_bert_ce_path):
    with pytest.raises(InvalidInputError, match="route"):
        FastEncoderReranker(str(tiny_bert_ce_path), route="gpu-magic")
    with pytest.raises(InvalidInputError, match="CPU only"):
        FastEncoderReranker(str(tiny_bert_ce_path), device="cuda")
    assert default_route() in {"torch-bf16", "torch-fp32"}


def test_load_reranker_picks_fast_path_on_cpu(tiny_bert_ce_path):
    from rankfunnel.rerank import load_reranker

    r = load_reranker(str(tiny_bert_ce_path), device="cpu", batch_size=8)
    assert isinstance(r, FastEncoderReranker) and r.route == default_route() and r.max_rows == 8


def test_default_route_is_bf16_only_with_native_bf16_and_never_int8(monkeypatch):
    from rankfunnel.rerank import encoder_fast

    monkeypatch.setattr(encoder_fast, "cpu_has_native_bf16", lambda: False)
    assert default_route() == "torch-fp32"  # int8 lost NDCG@10 beyond 0.005 (bench/route_quality.py)
    monkeypatch.setattr(encoder_fast, "cpu_has_native_bf16", lambda: True)
    assert default_route() == "torch-bf16"
