"""Class 4 of issue 14: one huge stored document must not make scoring unbounded.

Every local reranker cuts texts before tokenising (rerank.base.check_pairs), so the characters handed to the
tokenizer and the tokens scored per pair are bounded by the model's length limit, whatever the document holds.
Measured by counting characters and tokens, not by timing.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rankfunnel.rerank.base import CHARS_PER_TOKEN_CAP

HUGE = "the boiling point of water drops at altitude " * 50_000  # ~2.2 MB
QUERY = "boiling point of water"


class CountingTokenizer:
    """Wraps a tokenizer: records the characters of every text handed to ``__call__``; delegates the rest."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[int] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for arg in list(args[:2]) + [kwargs.get("text"), kwargs.get("text_pair")]:
            if isinstance(arg, str):
                self.texts.append(len(arg))
            elif isinstance(arg, list | tuple):
                self.texts.extend(len(a) if isinstance(a, str) else sum(map(len, a)) for a in arg)
        return self.inner(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_cross_encoder_reads_a_bounded_prefix(tiny_bert_ce_path) -> None:
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    rr = CrossEncoderReranker(str(tiny_bert_ce_path), device="cpu")
    handed: list[int] = []  # characters of each text handed to sentence-transformers (which tokenises them)
    predict = rr.model.predict

    def counting(pairs, **kwargs):
        handed.extend(len(t) for pair in pairs for t in pair)
        return predict(pairs, **kwargs)

    rr.model.predict = counting
    limit = rr.max_length or 512
    huge, cut = rr.score(QUERY, [HUGE])[0], rr.score(QUERY, [HUGE[: limit * 6]])[0]
    assert handed and max(handed) <= limit * CHARS_PER_TOKEN_CAP
    assert huge == pytest.approx(cut, abs=1e-5)  # the cut never changes what the model reads


def test_fast_encoder_reads_a_bounded_prefix(tiny_bert_ce_path) -> None:
    from rankfunnel.rerank.encoder_fast import FastEncoderReranker

    rr = FastEncoderReranker(str(tiny_bert_ce_path), route="torch-fp32")
    counter = CountingTokenizer(rr.tokenizer)
    rr.tokenizer = counter
    huge = rr.score(QUERY, [HUGE, "short"])
    assert max(counter.texts) <= rr.max_length * CHARS_PER_TOKEN_CAP * 2  # two lists of texts per call
    enc = counter.inner([QUERY], [HUGE[: rr.max_length * CHARS_PER_TOKEN_CAP]], truncation="longest_first",
                        max_length=rr.max_length)
    assert len(enc["input_ids"][0]) <= rr.max_length  # tokens scored per pair
    assert huge[0] == pytest.approx(rr.score(QUERY, [HUGE[: rr.max_length * 6]])[0], abs=1e-5)


def test_decoder_builds_a_bounded_number_of_windows(tiny_zerank_path) -> None:
    from rankfunnel.rerank.decoder import MAX_WINDOWS, DecoderReranker

    rr = copy.copy(DecoderReranker(str(tiny_zerank_path), device="cpu", max_doc_tokens=16, chunk_overlap=0))
    assert rr.max_chunks == MAX_WINDOWS
    counter = CountingTokenizer(rr.tokenizer)
    rr.tokenizer = counter
    seen: list[int] = []
    score_units = rr._score_units

    def counting(units):
        seen.append(len(units))
        return score_units(units)

    rr._score_units = counting  # type: ignore[method-assign]
    rr.predict([(QUERY, HUGE)])
    assert seen == [MAX_WINDOWS]  # not the ~100,000 windows the whole document would make
    doc_chars = MAX_WINDOWS * 16 * CHARS_PER_TOKEN_CAP
    assert max(counter.texts) <= doc_chars + 2_000  # the prompt template around the cut document
