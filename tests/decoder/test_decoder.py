"""DecoderReranker against sentence-transformers and direct transformers computations (fp32, tiny Qwen3)."""

from __future__ import annotations

import copy
import json
import logging
import random

import numpy as np
import pytest
import torch

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.base import Calibration
from rankfunnel.rerank.decoder import DecoderReranker, is_decoder_reranker
from rankfunnel.rerank.decoder_batching import windows

WORDS = [
    "the",
    "cell",
    "protein",
    "gene",
    "binds",
    "Yes",
    "no",
    "42",
    "ü",
    "中文",
    "(x)",
    "drug",
    "trial",
    "a",
]


def text(rnd: random.Random, n: int) -> str:
    seps = [" ", " ", " ", "\n", ", ", ". "]
    return "".join(rnd.choice(WORDS) + rnd.choice(seps) for _ in range(n)).strip()


def make_pairs(seed: int, n_queries: int = 3, docs_per_query: int = 7) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    pairs = []
    for _ in range(n_queries):
        q = text(rnd, rnd.choice([2, 5, 30]))
        pairs += [(q, text(rnd, rnd.randint(0, 60))) for _ in range(docs_per_query)]
    pairs.append((pairs[0][0], "\n\ndocument starting with newlines"))  # gets its own (non-shared) prefix
    rnd.shuffle(pairs)
    return pairs


@pytest.fixture(scope="module")
def st_zerank(tiny_zerank_path):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(tiny_zerank_path), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def _rr_zerank_module(tiny_zerank_path):
    return DecoderReranker(str(tiny_zerank_path), device="cpu")


@pytest.fixture
def rr_zerank(_rr_zerank_module):
    """A shallow copy: settings changed by a test stay in it, the model and tokenizer are shared."""
    return copy.copy(_rr_zerank_module)


@pytest.fixture(scope="module")
def lm_zerank(tiny_zerank_path, _rr_zerank_module):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_zerank_path), dtype=torch.float32).eval()
    return model, _rr_zerank_module.tokenizer


def direct_logits(lm, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return lm(input_ids=torch.tensor([ids])).logits[0, -1]


def st_reference(ce, pairs):
    return ce.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=4, show_progress_bar=False)


@pytest.mark.parametrize(
    "prefix_sharing,batch_tokens,max_batch",
    [(True, 16384, None), (True, 157, 3), (False, 16384, None), (False, 211, None)],
)
def test_equals_sentence_transformers(rr_zerank, st_zerank, prefix_sharing, batch_tokens, max_batch):
    pairs = make_pairs(seed=batch_tokens)
    ref = st_reference(st_zerank, pairs)
    rr_zerank.prefix_sharing, rr_zerank.batch_tokens, rr_zerank.max_batch_size = (
        prefix_sharing,
        batch_tokens,
        max_batch,
    )
    got = rr_zerank.predict(pairs)
    assert got.dtype == np.float32 and got.shape == (len(pairs),)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert np.ptp(ref) > 1e-2  # the random model separates documents: the comparison is not vacuous


def test_one_document_and_empty_input(rr_zerank, st_zerank):
    pair = [("what binds the protein?", "The gene binds it.")]
    np.testing.assert_allclose(rr_zerank.predict(pair), st_reference(st_zerank, pair), atol=1e-4, rtol=0)
    assert rr_zerank.predict([]).shape == (0,)
    assert rr_zerank.score("q", []).shape == (0,)


def test_score_is_yes_logit_at_last_token(rr_zerank, lm_zerank):
    lm, tok = lm_zerank
    q, d = "is the trial positive", "The drug trial was positive (p < 0.05)."
    prompt = (
        "<|im_start|>system\n"
        + q
        + "<|im_end|>\n<|im_start|>user\n"
        + d
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    logits = direct_logits(lm, ids)
    assert rr_zerank.true_token_id == 9454 and rr_zerank.false_token_id is None
    assert abs(float(rr_zerank.predict([(q, d)])[0]) - float(logits[9454])) < 1e-4


def test_chunks_equal_scoring_each_window(rr_zerank, lm_zerank):
    lm, _ = lm_zerank
    rr = rr_zerank
    rr.max_doc_tokens, rr.chunk_overlap, rr.batch_tokens = 16, 5, 100
    rnd = random.Random(5)
    q, docs = "gene protein", [text(rnd, 40), text(rnd, 4), text(rnd, 25)]
    from rankfunnel.rerank.prompts import encode_pairs

    encoded = encode_pairs(rr.tokenizer, rr.format, q, docs)
    expected_max, expected_mean = [], []
    for enc in encoded:
        spans = windows(len(enc.doc), 16, 5)
        scores = [
            float(direct_logits(lm, list(enc.prefix + enc.doc[a:b] + enc.suffix))[9454]) for a, b in spans
        ]
        expected_max.append(max(scores))
        expected_mean.append(float(np.mean(scores)))
    assert len(windows(len(encoded[0].doc), 16, 5)) >= 3
    np.testing.assert_allclose(rr.score(q, docs), expected_max, atol=1e-4, rtol=0)
    rr.aggregate = "mean"
    np.testing.assert_allclose(rr.score(q, docs), expected_mean, atol=1e-4, rtol=0)
    rr.prefix_sharing = False
    np.testing.assert_allclose(rr.score(q, docs), expected_mean, atol=1e-4, rtol=0)


def test_truncation_keeps_the_suffix(rr_zerank, lm_zerank, caplog):
    lm, _ = lm_zerank
    rr = rr_zerank
    rr.max_doc_tokens, rr.chunk_overlap, rr.max_chunks = 8, 0, 1
    q, d = "what is it", "one two three four five six seven eight nine ten eleven twelve"
    from rankfunnel.rerank.prompts import encode_pairs

    enc = encode_pairs(rr.tokenizer, rr.format, q, [d])[0]
    assert enc.suffix == tuple(rr.tokenizer("<|im_end|>\n<|im_start|>assistant\n")["input_ids"])
    expected = float(direct_logits(lm, list(enc.prefix + enc.doc[:8] + enc.suffix))[9454])
    with caplog.at_level(logging.WARNING, logger="rankfunnel.rerank.decoder"):
        got = float(rr.score(q, [d])[0])
    assert abs(got - expected) < 1e-4
    assert "max_chunks" in caplog.text  # the cut is reported, never silent


def test_qwen3_reranker_style(tiny_qwen3_reranker_path):
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForCausalLM

    from rankfunnel.rerank.prompts import prompt_format

    path = str(tiny_qwen3_reranker_path)
    rr = DecoderReranker(path, device="cpu")
    assert rr.style == "qwen3-reranker" and (rr.true_token_id, rr.false_token_id) == (9693, 2152)
    assert rr.calibration == Calibration(temperature=1.0)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = rr.tokenizer
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    pairs = make_pairs(seed=11, n_queries=2, docs_per_query=3)
    for instruction in [None, "Find passages about genes"]:
        rr.format = prompt_format(rr.tokenizer, "qwen3-reranker", instruction)
        inst = instruction or "Given a web search query, retrieve relevant passages that answer the query"
        expected = []
        for q, d in pairs:
            body = f"<Instruct>: {inst}\n<Query>: {q}\n<Document>: {d}"
            logits = direct_logits(lm, tok(prefix + body + suffix, add_special_tokens=False)["input_ids"])
            expected.append(float(logits[9693] - logits[2152]))
        np.testing.assert_allclose(rr.predict(pairs), expected, atol=1e-4, rtol=0)
    ce = CrossEncoder(path, device="cpu", local_files_only=True)
    rr.format = prompt_format(rr.tokenizer, "qwen3-reranker")
    np.testing.assert_allclose(rr.predict(pairs), st_reference(ce, pairs), atol=1e-4, rtol=0)


def test_zerank_instruction_matches_reference(rr_zerank, st_zerank):
    from rankfunnel.rerank.prompts import prompt_format

    rr = rr_zerank
    rr.format = prompt_format(rr.tokenizer, "zerank", instruction="Prefer clinical trials")
    pairs = make_pairs(seed=2, n_queries=2, docs_per_query=3)
    wrapped = [
        (f"<query>{q}</query>\n<instruction>Prefer clinical trials</instruction>", d) for q, d in pairs
    ]
    np.testing.assert_allclose(rr.predict(pairs), st_reference(st_zerank, wrapped), atol=1e-4, rtol=0)


def test_batches_stay_within_token_budget(rr_zerank, monkeypatch):
    rr = rr_zerank
    rr.batch_tokens = 120
    seen = []
    original = rr._forward

    def spy(seqs, *, prefix_len, cache):
        seen.append((len(seqs), prefix_len + max(len(s) for s in seqs)))
        return original(seqs, prefix_len=prefix_len, cache=cache)

    monkeypatch.setattr(rr, "_forward", spy)
    pairs = make_pairs(seed=4, n_queries=2, docs_per_query=9)
    rr.predict(pairs)
    assert sum(n for n, _ in seen) == len(pairs)
    assert all(n == 1 or n * width <= 120 for n, width in seen)
    assert any(n > 1 for n, _ in seen)


def test_ranking_and_calibration(rr_zerank):
    assert rr_zerank.calibration == Calibration(temperature=5.0)
    ranked = rr_zerank.rank("gene", ["the gene", "a trial", "protein binds"], top_n=2)
    assert len(ranked) == 2 and ranked[0][1] >= ranked[1][1]
    assert abs(ranked[0][2] - 1 / (1 + np.exp(-ranked[0][1] / 5))) < 1e-6


def test_is_decoder_reranker(tiny_zerank_path, tiny_qwen3_reranker_path, tmp_path):
    assert is_decoder_reranker(str(tiny_zerank_path))
    assert is_decoder_reranker(str(tiny_qwen3_reranker_path))
    assert is_decoder_reranker("zeroentropy/zerank-2-reranker")
    assert is_decoder_reranker("Qwen/Qwen3-Reranker-4B")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    assert not is_decoder_reranker(str(tmp_path))
    assert not is_decoder_reranker(str(tmp_path / "missing"))


def test_invalid_arguments(tiny_zerank_path, rr_zerank):
    with pytest.raises(InvalidInputError, match="chunk_overlap"):
        DecoderReranker(str(tiny_zerank_path), max_doc_tokens=8, chunk_overlap=8)
    with pytest.raises(InvalidInputError, match="style"):
        DecoderReranker(str(tiny_zerank_path), style="bert")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="query"):
        rr_zerank.score("  ", ["d"])
    with pytest.raises(InvalidInputError, match="Pair 0"):
        rr_zerank.predict([("q", None)])  # type: ignore[list-item]


def test_load_reranker_picks_the_decoder_scorer(tiny_zerank_path):
    from rankfunnel.rerank import load_reranker

    rr = load_reranker(str(tiny_zerank_path), device="cpu")
    assert isinstance(rr, DecoderReranker) and rr.style == "zerank"


def test_half_precision_path_runs_and_tracks_fp32(tiny_zerank_path, rr_zerank):
    """The GPU dtype path (bf16 weights, fp32 score vector) exercised on CPU: close to fp32, same ranking."""
    pairs = make_pairs(seed=8, n_queries=2, docs_per_query=5)
    ref = rr_zerank.predict(pairs)
    rr = DecoderReranker(str(tiny_zerank_path), device="cpu", dtype="bf16")
    assert rr.dtype == torch.bfloat16 and rr.score_weight.dtype == torch.float32
    got = rr.predict(pairs)
    assert np.abs(got - ref).max() < 0.1
    assert np.corrcoef(got, ref)[0, 1] > 0.99
