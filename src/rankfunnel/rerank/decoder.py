"""Fast scorer for decoder-only rerankers (zerank-2, Qwen3-Reranker).

Scores are the reference's (sentence-transformers ``CrossEncoder.predict`` with an identity activation):
zerank-2's "Yes" logit, Qwen3-Reranker's "yes" minus "no" logit, at the last token of the prompt. What differs
is the work done to get them:

- only the needed ``lm_head`` rows are applied to the last real token's hidden state (one dot product per
  pair instead of a 151,669-wide vocabulary row);
- batches are built by a token budget over length-sorted sequences with right padding, so padding is minimal
  and peak memory is bounded by ``batch_tokens`` whatever the number of documents;
- the prompt prefix (template head + query) runs once per query; its key/value cache is expanded to each
  batch and only document + suffix tokens are computed (positions offset by the prefix length);
- documents longer than ``max_doc_tokens`` are split into overlapping token windows, each scored with the full
  prefix and suffix, and aggregated (max by default); the suffix is never truncated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rankfunnel._optional import require
from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.models import choose_device, choose_dtype, resolve_model, warn_if_non_commercial
from rankfunnel.progress import progress
from rankfunnel.rerank.base import CHARS_PER_TOKEN_CAP, BaseReranker, Calibration, check_pairs
from rankfunnel.rerank.batching import token_budget_batches
from rankfunnel.rerank.decoder_batching import Unit, make_units
from rankfunnel.rerank.prompts import STYLES, encode_pairs, prompt_format

log = logging.getLogger(__name__)

#: Windows scored per document when ``max_chunks`` is None: 32 windows of 2,048 tokens read ~65k tokens of a
#: document; what lies beyond is not scored (and not tokenised), however long the stored document is.
MAX_WINDOWS = 32

Style = Literal["auto", "zerank", "qwen3-reranker"]
Aggregate = Literal["max", "mean", "first"]


def _read_json(model: str, filename: str) -> Any:
    """A JSON file of a local folder or (when online) a hub repository; ``None`` when absent."""
    path = Path(model)
    if path.is_dir():
        f = path / filename
        return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model, filename)).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - missing file, offline hub, private repo: all mean "unknown"
        return None


def _logit_score_config(model: str) -> dict[str, Any] | None:
    """``LogitScore`` settings (true/false token ids) of a sentence-transformers CrossEncoder folder."""
    modules = _read_json(model, "modules.json")
    for m in modules or []:
        if str(m.get("type", "")).endswith("LogitScore"):
            cfg = _read_json(model, f"{m['path']}/config.json" if m.get("path") else "config.json")
            return cfg if isinstance(cfg, dict) else None
    return None


def is_decoder_reranker(path_or_name: str) -> bool:
    """Whether a model is a decoder-only (causal-LM) reranker that :class:`DecoderReranker` can score.

    True when its ``modules.json`` has a ``LogitScore`` module or its config's architecture ends with
    ``ForCausalLM``; for a hub id that cannot be read, known family names (zerank, Qwen3-Reranker) decide.

    Examples:
        >>> is_decoder_reranker("zeroentropy/zerank-2-reranker")
        True
        >>> is_decoder_reranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
        False
    """
    name = str(path_or_name)
    lowered = name.lower()
    if not Path(name).is_dir() and ("zerank" in lowered or "qwen3-reranker" in lowered):
        return True
    try:
        model = resolve_model(name)
    except Exception:  # noqa: BLE001 - an unresolvable name is not a decoder reranker we can load
        return False
    if _logit_score_config(model) is not None:
        return True
    config = _read_json(model, "config.json") or {}
    return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])


def _detect_style(name: str, logit_cfg: dict[str, Any] | None) -> str:
    if logit_cfg is not None:
        return "zerank" if logit_cfg.get("false_token_id") is None else "qwen3-reranker"
    lowered = name.lower()
    if "qwen3-reranker" in lowered:
        return "qwen3-reranker"
    return "zerank"


class DecoderReranker(BaseReranker):
    """Fast, reference-exact scorer for zerank-2 and Qwen3-Reranker models.

    Args:
        model: Hub id or local folder (a causal LM, optionally in sentence-transformers' CrossEncoder layout).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... ``None`` picks the best available.
        dtype: ``"fp32"``, ``"bf16"``, ``"fp16"`` or a torch dtype; ``None``: fp32 on CPU, bf16/fp16 on GPU.
        style: Prompt and score convention; ``"auto"`` reads it from the folder (``1_LogitScore/config.json``)
            or the model name.
        instruction: Optional task instruction (zerank: wrapped into the system turn; Qwen3-Reranker: the
            ``<Instruct>`` line, default "Given a web search query, retrieve relevant passages...").
        max_doc_tokens: Document tokens per window; longer documents are split into windows.
        chunk_overlap: Tokens shared by consecutive windows.
        aggregate: How window scores combine: ``"max"`` (default), ``"mean"`` or ``"first"``.
        max_chunks: Cap on windows per document (``None``: :data:`MAX_WINDOWS`, so that one stored document
            cannot make scoring unbounded); a warning counts documents cut by the cap.
        batch_tokens: Token budget of one forward pass (batch size x padded length, prefix included);
            ``"auto"``: 16,384 on GPU, 2,048 on CPU (big batches gain nothing there, smaller ones pad less);
            ``None``: unbounded (then cap with ``max_batch_size``).
        max_batch_size: Optional cap on sequences per forward pass.
        sort_by_length: Sort sequences by length before batching (minimal padding).
        prefix_sharing: Run each query's prompt prefix once and reuse its key/value cache.
        calibration: Raw-to-0..1 mapping; default ``sigmoid(raw / 5)`` for zerank, ``sigmoid(raw)`` for
            Qwen3-Reranker.
        show_progress: Progress bar over batches (``None``: only for requests of 64+ batches).

    Examples:
        >>> rr = DecoderReranker("zeroentropy/zerank-2-reranker")  # doctest: +SKIP
        >>> rr.predict([("what is rankfunnel?", "A two-stage search library.")])  # doctest: +SKIP
        array([4.3], dtype=float32)
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: Any = None,
        style: Style = "auto",
        instruction: str | None = None,
        max_doc_tokens: int = 2048,
        chunk_overlap: int = 128,
        aggregate: Aggregate = "max",
        max_chunks: int | None = None,
        batch_tokens: int | Literal["auto"] | None = "auto",
        max_batch_size: int | None = None,
        sort_by_length: bool = True,
        prefix_sharing: bool = True,
        calibration: Calibration | None = None,
        show_progress: bool | None = None,
    ) -> None:
        if max_doc_tokens < 1:
            raise InvalidInputError(f"max_doc_tokens must be >= 1, got {max_doc_tokens}.")
        if not 0 <= chunk_overlap < max_doc_tokens:
            raise InvalidInputError(f"chunk_overlap must be in [0, max_doc_tokens), got {chunk_overlap}.")
        if aggregate not in ("max", "mean", "first"):
            raise InvalidInputError(f"aggregate={aggregate!r} is unknown; use 'max', 'mean' or 'first'.")
        if (
            batch_tokens != "auto"
            and batch_tokens is not None
            and (not isinstance(batch_tokens, int) or batch_tokens < 1)
        ):
            raise InvalidInputError(
                f"batch_tokens must be an integer >= 1, 'auto' or None, got {batch_tokens!r}."
            )
        if max_chunks is not None and max_chunks < 1:
            raise InvalidInputError(f"max_chunks must be >= 1 or None, got {max_chunks}.")
        if style != "auto" and style not in STYLES:
            raise InvalidInputError(f"style={style!r} is unknown; use 'auto', 'zerank' or 'qwen3-reranker'.")
        self.torch = require("torch", "core")
        self.max_doc_tokens, self.chunk_overlap, self.aggregate = max_doc_tokens, chunk_overlap, aggregate
        self.max_chunks: int = max_chunks if max_chunks is not None else MAX_WINDOWS
        self.max_batch_size = max_batch_size
        self.sort_by_length, self.prefix_sharing, self.show_progress = (
            sort_by_length,
            prefix_sharing,
            show_progress,
        )

        path = resolve_model(model)
        self.licence = warn_if_non_commercial(model, path)
        logit_cfg = _logit_score_config(path)
        self.style = _detect_style(model, logit_cfg) if style == "auto" else style
        self.device = choose_device(device)
        self.dtype = dtype if isinstance(dtype, self.torch.dtype) else choose_dtype(self.device, dtype)
        self.batch_tokens: int | None = (
            (2048 if self.device == "cpu" else 16384) if batch_tokens == "auto" else batch_tokens
        )
        self.name = model
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(path)
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype, attn_implementation="sdpa")
        except Exception as exc:  # noqa: BLE001 - report any loading failure with the fix
            raise RerankerUnavailableError(
                f"Could not load decoder reranker {model!r} ({type(exc).__name__}: {exc}). Check the name or "
                "folder (it must hold a causal LM and its tokenizer), or pass a cross-encoder instead."
            ) from exc
        lm.eval().to(self.device)
        self.config = lm.config
        self.base = lm.get_decoder()
        self._score_vector(lm, logit_cfg)
        del lm  # keep only the decoder stack; the (tied) head rows were copied out
        self.format = prompt_format(self.tokenizer, self.style, instruction)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.max_positions = int(getattr(self.config, "max_position_embeddings", 1 << 30))
        self.calibration = calibration or Calibration(temperature=5.0 if self.style == "zerank" else 1.0)

    def _score_vector(self, lm: Any, logit_cfg: dict[str, Any] | None) -> None:
        tok = self.tokenizer
        if logit_cfg is not None:
            true_id, false_id = logit_cfg["true_token_id"], logit_cfg.get("false_token_id")
        elif self.style == "zerank":
            true_id, false_id = tok.convert_tokens_to_ids("Yes"), None
        else:
            true_id, false_id = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
        self.true_token_id, self.false_token_id = int(true_id), None if false_id is None else int(false_id)
        head = lm.get_output_embeddings()
        w = head.weight[self.true_token_id].detach().float().clone()
        b = float(head.bias[self.true_token_id]) if getattr(head, "bias", None) is not None else 0.0
        if self.false_token_id is not None:
            w -= head.weight[self.false_token_id].detach().float()
            b -= float(head.bias[self.false_token_id]) if getattr(head, "bias", None) is not None else 0.0
        self.score_weight, self.score_bias = w, b  # score = hidden_last . w + b, in fp32

    # ------------------------------------------------------------------ scoring
    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw scores (float32) of (query, document) pairs, in input order; pairs are grouped by query.

        Examples:
            >>> rr.predict([("q", "doc one"), ("q", "doc two")])  # doctest: +SKIP
            array([1.25, -0.5], dtype=float32)
        """
        if len(pairs) == 0:
            return np.zeros(0, dtype=np.float32)
        # texts cut before tokenising: a document to what its windows can read, a query to the context size
        step = self.max_doc_tokens - self.chunk_overlap
        pairs = check_pairs(pairs, self.max_chunks * step + self.chunk_overlap)
        qcap = self.max_positions * CHARS_PER_TOKEN_CAP
        pairs = [(q[:qcap], d) for q, d in pairs]
        groups: dict[str, list[int]] = {}
        for i, pair in enumerate(pairs):
            groups.setdefault(pair[0], []).append(i)
        units: list[Unit] = []
        cut = 0
        for query, idx in groups.items():
            encoded = encode_pairs(self.tokenizer, self.format, query, [pairs[i][1] for i in idx])
            self._check_length(encoded[0].prefix, encoded[0].suffix)
            new_units, n_cut = make_units(
                encoded, idx, self.max_doc_tokens, self.chunk_overlap, self.max_chunks
            )
            units.extend(new_units)
            cut += n_cut
        if cut:
            log.warning(
                "%d document(s) had more than max_chunks=%s windows of %d tokens; the rest of them was "
                "not scored. Raise max_chunks or max_doc_tokens to score whole documents.",
                cut,
                self.max_chunks,
                self.max_doc_tokens,
            )
        window_scores = self._score_units(units)
        return self._aggregate(units, window_scores, len(pairs))

    def _check_length(self, prefix: Sequence[int], suffix: Sequence[int]) -> None:
        need = len(prefix) + len(suffix) + 1
        if need > self.max_positions:
            raise InvalidInputError(
                f"The query's prompt takes {len(prefix) + len(suffix)} tokens, more than the model's "
                f"context of {self.max_positions}. Shorten the query."
            )
        if need + self.max_doc_tokens > self.max_positions:
            raise InvalidInputError(
                f"max_doc_tokens={self.max_doc_tokens} plus the prompt ({need - 1} tokens) exceeds the "
                f"model's context of {self.max_positions} tokens. Lower max_doc_tokens."
            )

    def _aggregate(self, units: Sequence[Unit], window_scores: np.ndarray, n: int) -> np.ndarray:
        per_pair: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        for u, s in zip(units, window_scores, strict=True):
            per_pair[u.pair].append((u.window, float(s)))
        out = np.empty(n, dtype=np.float32)
        for i, ws in enumerate(per_pair):
            ws.sort()
            vals = [s for _, s in ws]
            out[i] = (
                vals[0]
                if self.aggregate == "first"
                else (max(vals) if self.aggregate == "max" else float(np.mean(vals)))
            )
        return out

    def _score_units(self, units: Sequence[Unit]) -> np.ndarray:
        torch = self.torch
        scores = np.zeros(len(units), dtype=np.float32)
        if self.prefix_sharing:
            by_prefix: dict[tuple[int, ...], list[int]] = {}
            for k, u in enumerate(units):
                by_prefix.setdefault(u.prefix, []).append(k)
            plan = [
                (
                    prefix,
                    token_budget_batches(
                        [units[k].body_len for k in ks],
                        self.batch_tokens,
                        max_rows=self.max_batch_size,
                        fixed_len=len(prefix),
                        order="descending" if self.sort_by_length else "input",
                    ),
                    ks,
                )
                for prefix, ks in by_prefix.items()
            ]
        else:
            ks = list(range(len(units)))
            plan = [
                (
                    (),
                    token_budget_batches(
                        [units[k].full_len for k in ks],
                        self.batch_tokens,
                        max_rows=self.max_batch_size,
                        order="descending" if self.sort_by_length else "input",
                    ),
                    ks,
                )
            ]
        total = sum(len(b) for _, b, _ in plan)
        show = self.show_progress if self.show_progress is not None else total >= 64
        try:
            with progress("rerank (batches)", total, enabled=show) as bar, torch.inference_mode():
                for prefix, batches, ks in plan:
                    cache = self._prefix_cache(prefix) if prefix else None
                    for batch in batches:
                        members = [units[ks[b]] for b in batch]
                        seqs = [u.body for u in members] if prefix else [u.prefix + u.body for u in members]
                        out = self._forward(seqs, prefix_len=len(prefix), cache=cache)
                        for b, s in zip(batch, out, strict=True):
                            scores[ks[b]] = s
                        bar.advance()
        except torch.OutOfMemoryError as exc:
            raise RerankerUnavailableError(
                f"Out of memory while reranking with batch_tokens={self.batch_tokens}. Lower batch_tokens "
                "(or max_doc_tokens)."
            ) from exc
        return scores

    def _prefix_cache(self, prefix: Sequence[int]) -> list[tuple[Any, Any]]:
        """Per-layer (keys, values) of the prompt prefix, each ``[1, kv_heads, len(prefix), head_dim]``."""
        torch = self.torch
        ids = torch.tensor([list(prefix)], dtype=torch.long, device=self.device)
        out = self.base(input_ids=ids, use_cache=True)
        return [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    def _forward(
        self, seqs: Sequence[Sequence[int]], *, prefix_len: int, cache: list[tuple[Any, Any]] | None
    ) -> np.ndarray:
        """Scores of right-padded sequences (after a shared ``prefix_len``-token prefix when ``cache``)."""
        torch = self.torch
        from transformers import DynamicCache

        n, width = len(seqs), max(len(s) for s in seqs)
        lengths = torch.tensor([len(s) for s in seqs], device=self.device)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        ids = ids.to(self.device)
        real = torch.arange(width, device=self.device)[None, :] < lengths[:, None]
        kwargs: dict[str, Any] = {}
        if cache is not None:
            mask = torch.cat(
                [torch.ones(n, prefix_len, dtype=torch.long, device=self.device), real.long()], dim=1
            )
            kwargs["position_ids"] = (prefix_len + torch.arange(width, device=self.device))[None, :].expand(
                n, -1
            )
            kwargs["past_key_values"] = DynamicCache(
                ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in cache],
                config=self.config,
            )
            kwargs["use_cache"] = True
        else:
            mask = real.long()
            kwargs["use_cache"] = False
        hidden = self.base(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
        last = hidden[torch.arange(n, device=self.device), lengths - 1]
        w = self.score_weight.to(self.device)
        return (last.float() @ w + self.score_bias).cpu().numpy()
