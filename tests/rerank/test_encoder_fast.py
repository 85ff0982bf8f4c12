from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.batching import token_budget_batches
from rankfunnel.rerank.encoder_fast import FastEncoderReranker, default_route

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
    batches = token_budget_batches(lengths, budget, max_rows=rows)
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


@pytest.mark.parametrize("route", ["torch-int8", "torch-bf16", "onnx-int8", "openvino-bf16", "openvino-int8"])
def test_reduced_precision_routes_agree_with_fp32(tiny_bert_ce_path, tmp_path, route):
    docs = _docs(40, seed=1)
    ref = FastEncoderReranker(str(tiny_bert_ce_path), route="torch-fp32").score(QUERY, docs)
    # static int8 is calibrated on pairs like the data (the packaged default is English prose, which this
    # toy-vocabulary model reads as unknown tokens)
    extra = {"calibration_pairs": [(QUERY, d) for d in _docs(64, seed=7)]} if route == "openvino-int8" else {}
    fast = FastEncoderReranker(str(tiny_bert_ce_path), route=route, cache_dir=tmp_path, **extra)
    got = fast.score(QUERY, docs)
    rho = spearmanr(got, ref)[0]
    assert rho > 0.9, f"{route}: Spearman {rho:.3f} against fp32"
    assert np.abs(got - ref).max() < 0.1 * np.ptp(ref) + 0.05


def test_onnx_export_is_cached_once(tiny_bert_ce_path, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_ce_path, model, ignore=shutil.ignore_patterns(".rankfunnel-*"))
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
    assert default_route() in {"torch-bf16", "torch-fp32", "openvino-bf16", "openvino-fp32"}


def test_load_reranker_picks_fast_path_on_cpu(tiny_bert_ce_path):
    from rankfunnel.rerank import load_reranker

    r = load_reranker(str(tiny_bert_ce_path), device="cpu", batch_size=8)
    assert isinstance(r, FastEncoderReranker) and r.route == default_route() and r.max_rows == 8


def test_default_route_is_bf16_only_with_native_bf16_and_never_int8(monkeypatch):
    from rankfunnel.rerank import encoder_fast

    for has_openvino, engine in ((True, "openvino"), (False, "torch")):
        monkeypatch.setattr(encoder_fast, "openvino_available", lambda v=has_openvino: v)
        monkeypatch.setattr(encoder_fast, "cpu_has_native_bf16", lambda: False)
        assert default_route() == f"{engine}-fp32"  # int8 moved NDCG@10 by up to 0.005-0.030
        monkeypatch.setattr(encoder_fast, "cpu_has_native_bf16", lambda: True)
        assert default_route() == f"{engine}-bf16"


def test_openvino_fp32_equals_reference(tiny_bert_ce_path, bert_reranker, tmp_path):
    fast = FastEncoderReranker(str(tiny_bert_ce_path), route="openvino-fp32", token_budget=256, batch_size=5,
                               cache_dir=tmp_path)
    docs = _docs(23, seed=2)
    np.testing.assert_allclose(fast.score(QUERY, docs), bert_reranker.score(QUERY, docs), atol=1e-4)
    assert fast.score(QUERY, []).shape == (0,)


def test_openvino_conversion_is_cached_once_and_keyed_by_calibration(tiny_bert_ce_path, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_ce_path, model, ignore=shutil.ignore_patterns(".rankfunnel-*"))
    FastEncoderReranker(str(model), route="openvino-int8")
    cache = model / ".rankfunnel-openvino"
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "model.xml").is_file() and (entries[0] / "model.bin").is_file()
    mtime = (entries[0] / "model.bin").stat().st_mtime_ns
    again = FastEncoderReranker(str(model), route="openvino-int8")
    assert (entries[0] / "model.bin").stat().st_mtime_ns == mtime  # loaded, not quantised again
    assert again.score(QUERY, ["python error"]).shape == (1,)
    FastEncoderReranker(str(model), route="openvino-int8",
                        calibration_pairs=[(QUERY, d) for d in _docs(16, seed=3)])
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2  # own calibration, own entry
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]


def test_interrupted_openvino_conversion_leaves_no_entry(tiny_bert_ce_path, tmp_path, monkeypatch):
    from rankfunnel.errors import RerankerUnavailableError
    from rankfunnel.rerank import openvino_cache

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # like Ctrl-C in the middle of quantisation

    monkeypatch.setattr(openvino_cache, "_convert", boom)
    with pytest.raises((KeyboardInterrupt, RerankerUnavailableError)):
        FastEncoderReranker(str(tiny_bert_ce_path), route="openvino-int8", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither a half-written model nor the temporary folder


def test_openvino_predict_is_safe_from_several_threads(tiny_bert_ce_path, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    fast = FastEncoderReranker(str(tiny_bert_ce_path), route="openvino-fp32", token_budget=128,
                               cache_dir=tmp_path)
    docs = [_docs(30, seed=s) for s in range(6)]
    expected = [fast.score(QUERY, d) for d in docs]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda d: fast.score(QUERY, d), docs))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-6)


def test_missing_openvino_names_the_extra(tiny_bert_ce_path, tmp_path, monkeypatch):
    import sys

    from rankfunnel.errors import RankfunnelError

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(RankfunnelError, match=r"rankfunnel\[openvino\]"):
        FastEncoderReranker(str(tiny_bert_ce_path), route="openvino-bf16", cache_dir=tmp_path)


def test_models_in_the_hub_cache_are_not_written_to(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from rankfunnel.rerank.onnx_cache import cache_folder

    hub = tmp_path / "hub"
    snapshot = hub / "models--org--name" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    assert cache_folder(str(snapshot), None, "openvino") == tmp_path / "user" / "rankfunnel" / "openvino"
    assert not (snapshot / ".rankfunnel-openvino").exists()
    local = tmp_path / "my-model"
    local.mkdir()
    assert cache_folder(str(local), None, "openvino") == local / ".rankfunnel-openvino"


def test_route_is_an_explicit_argument_and_unknown_routes_are_rejected(tiny_bert_ce_path, tmp_path):
    from rankfunnel.rerank import load_reranker

    r = load_reranker(str(tiny_bert_ce_path), device="cpu", route="torch-int8")
    assert isinstance(r, FastEncoderReranker) and r.route == "torch-int8"
    assert load_reranker(str(tiny_bert_ce_path), device="cpu").route == default_route()  # nothing global changed
    with pytest.raises(InvalidInputError, match="openvino-int8"):  # the message lists the valid routes
        load_reranker(str(tiny_bert_ce_path), device="cpu", route="openvino-int4")


def test_cli_reads_the_cpu_route_from_its_option_and_the_environment(tiny_bert_ce_path, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rankfunnel.cli import _reranker, app

    docs = tmp_path / "docs.txt"
    docs.write_text("red car\nblue boat\n")
    seen: list[str] = []
    real = _reranker.load

    def spy(*args, **kwargs):
        seen.append(kwargs["route"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_reranker, "load", spy)
    args = ["rerank", "-q", "red car", "-d", str(docs), "--reranker", str(tiny_bert_ce_path), "--json"]
    res = CliRunner().invoke(app, args, env={"RANKFUNNEL_CPU_ROUTE": "torch-int8"})
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, [*args, "--cpu-route", "torch-fp32"], env={"RANKFUNNEL_CPU_ROUTE": "torch-int8"})
    assert res.exit_code == 0, res.output
    assert seen == ["torch-int8", "torch-fp32"]
    res = CliRunner().invoke(app, args, env={"RANKFUNNEL_CPU_ROUTE": "fastest"})
    assert res.exit_code == 2 and "RANKFUNNEL_CPU_ROUTE" in res.output and "Traceback" not in res.output


def test_automatic_openvino_route_falls_back_to_torch_when_conversion_fails(tiny_bert_ce_path, tmp_path,
                                                                            monkeypatch, caplog):
    from rankfunnel.errors import RerankerUnavailableError
    from rankfunnel.rerank import encoder_fast

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operation aten::weird")

    monkeypatch.setattr(encoder_fast.OpenVinoEncoder, "build", broken)
    monkeypatch.setattr(encoder_fast, "openvino_available", lambda: True)
    monkeypatch.setattr(encoder_fast, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="rankfunnel.rerank.encoder_fast"):
        auto = FastEncoderReranker(str(tiny_bert_ce_path), cache_dir=tmp_path)
    assert auto.route == "torch-bf16" and auto.token_budget == 16384
    assert "aten::weird" in caplog.text and auto.score(QUERY, ["python error"]).shape == (1,)
    with pytest.raises(RerankerUnavailableError, match="aten::weird"):  # asked for by name: no silent swap
        FastEncoderReranker(str(tiny_bert_ce_path), route="openvino-bf16", cache_dir=tmp_path)
