from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.rerank.base import Calibration
from rankfunnel.types import Document, Hit

QUERY = "python list index out of range"
DOCS = [
    "the python error list index out of range happens when an index is past the end",
    "discount threshold and manager approval for pricing exceptions",
    "a court contract clause",
    "cancer risk in patients",
    "python",
]


def _hits(docs):
    return [Hit(id=f"d{i}", rank=i + 1, score=1.0 - i / 10, stage1_rank=i + 1, stage1_score=1.0 - i / 10,
                document=Document(id=f"d{i}", text=t)) for i, t in enumerate(docs)]


def test_raw_scores_match_sentence_transformers_logits(bert_reranker, tiny_bert_ce_path):
    from sentence_transformers import CrossEncoder

    ref = CrossEncoder(str(tiny_bert_ce_path), device="cpu").predict(
        [(QUERY, d) for d in DOCS], activation_fn=torch.nn.Identity())
    raw = bert_reranker.score(QUERY, DOCS)
    assert raw.dtype == np.float32 and raw.shape == (len(DOCS),)
    np.testing.assert_allclose(raw, ref, atol=1e-5)
    assert np.ptp(raw) > 1e-3, "tiny model should give distinguishable scores"


def test_score_rank_predict_rerank_consistent(bert_reranker):
    raw = bert_reranker.score(QUERY, DOCS)
    # odd batch size 3 over 5 pairs, and a mixed-query predict, give the same raw scores
    mixed = bert_reranker.predict([("other query", "x")] + [(QUERY, d) for d in DOCS])
    np.testing.assert_allclose(mixed[1:], raw, atol=1e-5)
    ranked = bert_reranker.rank(QUERY, DOCS, top_n=3)
    assert [i for i, _, _ in ranked] == list(np.argsort(-raw, kind="stable")[:3])
    for i, r, n in ranked:
        assert r == pytest.approx(float(raw[i]), abs=1e-6)
        assert n == pytest.approx(1 / (1 + math.exp(-r)), abs=1e-6)  # T=1 default for BERT
    hits = bert_reranker.rerank(QUERY, _hits(DOCS), top_n=4)
    assert [h.id for h in hits] == [f"d{i}" for i in np.argsort(-raw, kind="stable")[:4]]
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert all(h.rerank_score is not None for h in hits)
    assert hits[0].stage1_rank == int(hits[0].id[1:]) + 1  # stage-1 fields are kept
    many = bert_reranker.rerank_many([QUERY, "pricing approval"], [_hits(DOCS), _hits(DOCS[:2])], top_n=2)
    assert [h.id for h in many[0]] == [h.id for h in hits[:2]]
    assert len(many[1]) == 2


def test_empty_and_bad_input(bert_reranker):
    assert bert_reranker.score(QUERY, []).shape == (0,)
    assert bert_reranker.predict([]).shape == (0,)
    with pytest.raises(InvalidInputError, match="query is empty"):
        bert_reranker.score("  ", DOCS)
    with pytest.raises(InvalidInputError, match="strings"):
        bert_reranker.predict([(QUERY, None)])
    with pytest.raises(InvalidInputError):
        bert_reranker.predict([("only one",)])


def test_calibration_override(tiny_bert_ce_path):
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    cal = Calibration(temperature=2, bias=0.5)
    r = CrossEncoderReranker(str(tiny_bert_ce_path), device="cpu", calibration=cal)
    raw = r.score(QUERY, DOCS)
    np.testing.assert_allclose(r.normalise(raw), 1 / (1 + np.exp(-(raw - 0.5) / 2)), rtol=1e-6)


def test_unknown_model_offline_gives_plain_error(monkeypatch):
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RerankerUnavailableError) as info:
        CrossEncoderReranker("no-such-org/no-such-reranker-xyz")
    msg = str(info.value)
    assert "no-such-org/no-such-reranker-xyz" in msg and "connect to the hub" in msg and "--reranker none" in msg


def test_broken_folder_gives_plain_error(tmp_path):
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RerankerUnavailableError, match="could not be loaded"):
        CrossEncoderReranker(str(tmp_path), device="cpu")


def test_non_commercial_licence_warns(tiny_bert_ce_path, tmp_path):
    import shutil

    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    model = tmp_path / "nc-model"
    shutil.copytree(tiny_bert_ce_path, model)
    (model / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# a card\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="cc-by-nc-4.0"):
        r = CrossEncoderReranker(str(model), device="cpu")
    assert r.licence.non_commercial
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        CrossEncoderReranker(str(model), device="cpu")


def test_zerank_shaped_model_scores_yes_logit(tiny_zerank_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    path = str(tiny_zerank_path)
    r = CrossEncoderReranker(path, device="cpu", batch_size=2)
    assert r.calibration.temperature == 5.0  # LogitScore on "Yes" only -> zerank calibration
    pairs = [("what is a cell?", "Cells are the basic unit of life."), ("q", "a much longer document " * 20),
             ("pricing exception", "manager approval needed")]
    raw = r.predict(pairs)
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    for (q, d), s in zip(pairs, raw, strict=True):
        prompt = (f"<|im_start|>system\n{q}<|im_end|>\n<|im_start|>user\n{d}<|im_end|>\n"
                  "<|im_start|>assistant\n")
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            yes = lm(**ids).logits[0, -1, 9454].item()
        assert s == pytest.approx(yes, abs=1e-4)
    assert r.normalise(np.array([5.4062]))[0] == pytest.approx(0.7461, abs=1e-3)
