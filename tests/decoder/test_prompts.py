"""Prompt formats and token-exact pair encoding against the real Qwen3 tokenizer."""

from __future__ import annotations

import random

import pytest

from rankfunnel.rerank.batching import token_budget_batches
from rankfunnel.rerank.decoder_batching import windows
from rankfunnel.rerank.prompts import _ZERANK_PIECES, _qwen3_reranker_pieces, encode_pairs, prompt_format

ZERANK_PROMPT = "<|im_start|>system\n{q}<|im_end|>\n<|im_start|>user\n{d}<|im_end|>\n<|im_start|>assistant\n"
PIECES = [
    "the",
    " cell",
    "\n",
    "\n\n",
    "  ",
    " ",
    "Yes",
    "no",
    "123",
    "4",
    "ü",
    "é",
    "中文",
    "😀",
    ".",
    ",",
    "(",
    ")",
    "'s",
    "<",
    ">",
    ":",
    "\t",
    "CAPS",
    "-",
    "\r\n",
    "naïve",
    "x",
]


def random_text(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice(PIECES) for _ in range(n))


@pytest.fixture(scope="module")
def zerank_tok(tiny_zerank_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_zerank_path))


@pytest.fixture(scope="module")
def qwen3_tok(tiny_qwen3_reranker_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_qwen3_reranker_path))


def test_template_renders_zerank2_prompt_exactly(zerank_tok):
    msgs = [{"role": "query", "content": "what is x?"}, {"role": "document", "content": "x is y.\n"}]
    rendered = zerank_tok.apply_chat_template(msgs, tokenize=False)
    assert rendered == ZERANK_PROMPT.format(q="what is x?", d="x is y.\n")
    assert rendered.endswith("<|im_start|>assistant\n")  # the trailing newline survived the template file
    fmt = prompt_format(zerank_tok, "zerank")
    assert fmt.source == "template"
    assert fmt.render("what is x?", "x is y.\n") == rendered
    # the published format (fallback) agrees with the template
    assert (fmt.head, fmt.mid, fmt.tail) == _ZERANK_PIECES


def test_zerank_instruction_wraps_the_query(zerank_tok):
    fmt = prompt_format(zerank_tok, "zerank", instruction="Prefer recent papers")
    assert fmt.render("q", "d") == ZERANK_PROMPT.format(
        q="<query>q</query>\n<instruction>Prefer recent papers</instruction>", d="d"
    )


def test_qwen3_reranker_template_matches_published_format(qwen3_tok):
    fmt = prompt_format(qwen3_tok, "qwen3-reranker")
    assert fmt.source == "template"
    assert (fmt.head, fmt.mid, fmt.tail) == _qwen3_reranker_pieces(
        "Given a web search query, retrieve relevant passages that answer the query"
    )
    fmt_i = prompt_format(qwen3_tok, "qwen3-reranker", instruction="Find code")
    assert "<Instruct>: Find code\n<Query>: q\n<Document>: d<|im_end|>" in fmt_i.render("q", "d")
    assert fmt_i.render("q", "d").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_builtin_format_used_without_template(zerank_tok):
    import copy

    tok = copy.copy(zerank_tok)
    tok.chat_template = None
    assert prompt_format(tok, "zerank").source == "builtin"
    assert prompt_format(tok, "zerank").render("a", "b") == ZERANK_PROMPT.format(q="a", d="b")


@pytest.mark.parametrize("style", ["zerank", "qwen3-reranker"])
def test_encoding_equals_tokenizing_the_rendered_prompt(style, zerank_tok, qwen3_tok):
    tok = zerank_tok if style == "zerank" else qwen3_tok
    fmt = prompt_format(tok, style)
    rnd = random.Random(7)
    n_unshared = 0
    for _ in range(25):
        query = random_text(rnd, rnd.randint(1, 12))
        docs = [random_text(rnd, rnd.randint(0, 40)) for _ in range(8)] + ["\n\nleading newlines", "", " x"]
        encoded = encode_pairs(tok, fmt, query, docs)
        shared = tok(fmt.prefix(query), add_special_tokens=False)["input_ids"]
        for d, enc in zip(docs, encoded, strict=True):
            full = tok(fmt.render(query, d), add_special_tokens=False)["input_ids"]
            assert list(enc.prefix + enc.doc + enc.suffix) == full
            assert enc.shared == (list(enc.prefix) == shared)
            n_unshared += not enc.shared
            if not d:
                assert enc.doc == ()
    # documents that start with a newline merge with the template's "\n" under byte-level BPE
    assert n_unshared >= 1 if style == "zerank" else True


def test_windows_cover_every_token():
    assert windows(0, 4, 1) == [(0, 0)]
    for n in range(0, 40):
        for size, overlap in [(4, 0), (4, 3), (7, 2), (1, 0)]:
            ws = windows(n, size, overlap)
            covered = set()
            for a, b in ws:
                assert 0 <= a < b <= n or n == 0
                assert b - a <= size
                covered.update(range(a, b))
            assert covered == set(range(n))
            for (a0, b0), (a1, _) in zip(ws, ws[1:], strict=False):
                assert a1 > a0 and b0 - a1 >= overlap


def test_batches_respect_budget_and_keep_every_index():
    rnd = random.Random(3)
    for _ in range(50):
        lengths = [rnd.randint(1, 60) for _ in range(rnd.randint(1, 40))]
        prefix, budget = rnd.randint(0, 30), rnd.randint(20, 400)
        cap = rnd.choice([None, 3])
        batches = token_budget_batches(lengths, budget, max_rows=cap, fixed_len=prefix, order="descending")
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            width = max(lengths[i] for i in b)
            assert len(b) == 1 or len(b) * (prefix + width) <= budget
            assert cap is None or len(b) <= cap
    assert token_budget_batches([3, 1, 2], None, max_rows=2, order="input") == [[0, 1], [2]]
