"""Prompt formats of decoder-only rerankers and exact token-level encoding of (query, document) pairs.

A prompt is ``head + query + mid + document + tail``. The pieces come from the model's own chat template
(rendered once with sentinel strings and checked to be a plain concatenation), or from the published format
of the family when the template cannot carry a query/document pair.

Token ids are cut out of the tokenisation of the *whole* rendered prompt using character offsets, so
``prefix + document + suffix`` always equals what the reference (sentence-transformers, which tokenizes the
rendered prompt) feeds the model, even where BPE merges a document's leading newlines with the template's.
Such a pair simply gets its own prefix instead of the query's shared one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rankfunnel.errors import InvalidInputError

log = logging.getLogger(__name__)

STYLES = ("zerank", "qwen3-reranker")

QWEN3_RERANKER_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
QWEN3_RERANKER_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)

# Published formats, used when a model's chat template cannot render a query/document pair.
_ZERANK_PIECES = (
    "<|im_start|>system\n",
    "<|im_end|>\n<|im_start|>user\n",
    "<|im_end|>\n<|im_start|>assistant\n",
)


def _qwen3_reranker_pieces(instruction: str) -> tuple[str, str, str]:
    head = (
        f"<|im_start|>system\n{QWEN3_RERANKER_SYSTEM}<|im_end|>\n<|im_start|>user\n"
        f"<Instruct>: {instruction}\n<Query>: "
    )
    return head, "\n<Document>: ", "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


_SENTINELS = (("RFQUERYSENTINELA", "RFDOCSENTINELA"), ("RFQUERYSENTINELB", "RFDOCSENTINELB"))


@dataclass(frozen=True, slots=True)
class PromptFormat:
    """The text around the query and the document: ``head + query + mid + document + tail``.

    Examples:
        >>> f = PromptFormat("zerank", "<s>", "|", "</s>", "template")
        >>> f.render("q", "d")
        '<s>q|d</s>'
    """

    style: str
    head: str
    mid: str
    tail: str
    source: str  # "template" (the model's chat template) or "builtin" (the family's published format)

    def prefix(self, query: str) -> str:
        """Text before the document (shared by every document of ``query``)."""
        return self.head + query + self.mid

    def render(self, query: str, document: str) -> str:
        """The full prompt text."""
        return self.head + query + self.mid + document + self.tail


def _split(text: str, q: str, d: str) -> tuple[str, str, str] | None:
    if text.count(q) != 1 or text.count(d) != 1:
        return None
    iq, idoc = text.index(q), text.index(d)
    if idoc < iq:
        return None
    return text[:iq], text[iq + len(q) : idoc], text[idoc + len(d) :]


def _from_template(render: Any) -> tuple[str, str, str] | None:
    """Pieces from a render function, if it is a plain concatenation around the query and document."""
    try:
        (q0, d0), (q1, d1) = _SENTINELS
        pieces = _split(render(q0, d0), q0, d0)
        if pieces is None or render(q1, d1) != pieces[0] + q1 + pieces[1] + d1 + pieces[2]:
            return None
        return pieces
    except Exception as exc:  # noqa: BLE001 - any template failure means "use the published format"
        log.debug("chat template cannot render a pair: %s", exc)
        return None


def prompt_format(tokenizer: Any, style: str, instruction: str | None = None) -> PromptFormat:
    r"""The prompt format of a reranker, read from its chat template where possible.

    zerank: the template is rendered with messages ``query``/``document`` (sentence-transformers' pair roles),
    else ``system``/``user`` plus the generation prompt; an instruction turns the system content into
    ``<query>{q}</query>\n<instruction>{i}</instruction>``. Qwen3-Reranker: the template is rendered with
    the pair roles and an ``instruction`` variable, else the published prefix/suffix is used.

    Examples:
        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> prompt_format(AutoTokenizer.from_pretrained(path), "zerank").render("q", "d")  # doctest: +SKIP
        '<|im_start|>system\nq<|im_end|>\n<|im_start|>user\nd<|im_end|>\n<|im_start|>assistant\n'
    """
    if style not in STYLES:
        raise InvalidInputError(f"style={style!r} is unknown; use one of {', '.join(STYLES)} or 'auto'.")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    pieces = None
    kwargs: dict[str, Any] = {}
    if style == "qwen3-reranker":
        kwargs["instruction"] = instruction or QWEN3_RERANKER_DEFAULT_INSTRUCTION

    def render_pair(q: str, d: str) -> str:
        msgs = [{"role": "query", "content": q}, {"role": "document", "content": d}]
        return str(tokenizer.apply_chat_template(msgs, tokenize=False, **kwargs))

    def render_chat(q: str, d: str) -> str:
        msgs = [{"role": "system", "content": q}, {"role": "user", "content": d}]
        return str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))

    if has_template:
        pieces = _from_template(render_pair)
        if pieces is None and style == "zerank":
            pieces = _from_template(render_chat)
        if style == "qwen3-reranker" and pieces is not None and "<Query>" not in pieces[0] + pieces[1]:
            pieces = None  # a generic chat template, not the reranker's prompt
    source = "template"
    if pieces is None:
        source = "builtin"
        log.info(
            "Using the published %s prompt (the chat template cannot render a query/document pair).", style
        )
        pieces = _ZERANK_PIECES if style == "zerank" else _qwen3_reranker_pieces(kwargs["instruction"])
    head, mid, tail = pieces
    if style == "zerank" and instruction:
        head, mid = head + "<query>", f"</query>\n<instruction>{instruction}</instruction>" + mid
    return PromptFormat(style, head, mid, tail, source)


@dataclass(frozen=True, slots=True)
class EncodedPair:
    """Token ids of one pair: ``prefix + doc + suffix`` equals the tokenisation of the rendered prompt."""

    prefix: tuple[int, ...]
    doc: tuple[int, ...]
    suffix: tuple[int, ...]
    shared: bool  # prefix equals the query's shared prefix (tokenised alone)


def encode_pairs(tokenizer: Any, fmt: PromptFormat, query: str, docs: Sequence[str]) -> list[EncodedPair]:
    """Encode the pairs of one query, cutting each full prompt's tokens at the document's character span.

    Tokens that straddle a boundary (BPE merged template and document text) go to the document part, so
    nothing is dropped or duplicated; the prefix of such a pair then differs from the shared one.
    """
    prefix_text = fmt.prefix(query)
    shared = tuple(tokenizer(prefix_text, add_special_tokens=False)["input_ids"])
    if not docs:
        return []
    texts = [prefix_text + d + fmt.tail for d in docs]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    start = len(prefix_text)
    out: list[EncodedPair] = []
    for d, ids, offsets in zip(docs, enc["input_ids"], enc["offset_mapping"], strict=True):
        end = start + len(d)
        # first token that ends after the prefix text; first token that starts at/after the document end
        i = 0
        while i < len(ids) and offsets[i][1] <= start:
            i += 1
        j = i
        while j < len(ids) and offsets[j][0] < end:
            j += 1
        if not d:  # an empty document: nothing may sit between prefix and suffix
            j = i
        prefix = tuple(ids[:i])
        out.append(EncodedPair(prefix, tuple(ids[i:j]), tuple(ids[j:]), prefix == shared))
    return out
