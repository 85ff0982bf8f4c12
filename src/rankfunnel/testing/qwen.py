r"""Builders of Qwen3-shaped rerankers with random weights and the real Qwen3 tokenizer.

For tests and benchmarks.

Two conventions are supported, matching the two decoder-only reranker families rankfunnel scores:

- **zerank-2** (:func:`build_tiny_zerank`): prompt
  ``<|im_start|>system\n{query}<|im_end|>\n<|im_start|>user\n{document}<|im_end|>\n<|im_start|>assistant\n``,
  score = the ``"Yes"`` logit (token 9454) at the last position; sentence-transformers modules
  Transformer (text-generation) + ``LogitScore(true_token_id=9454, false_token_id=None)``.
- **Qwen3-Reranker** (:func:`build_tiny_qwen3_reranker`): a fixed system prompt, a user turn
  ``<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}``, the suffix
  ``<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n``; score = logit("yes") - logit("no").

Every folder loads with ``sentence_transformers.CrossEncoder(path)`` (the reference) and with
``transformers.AutoModelForCausalLM`` (what :class:`rankfunnel.rerank.decoder.DecoderReranker` uses).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError

log = logging.getLogger(__name__)

ZERANK_YES_ID = 9454  # "Yes"
QWEN3_RERANKER_YES_ID = 9693  # "yes"
QWEN3_RERANKER_NO_ID = 2152  # "no"
QWEN3_RERANKER_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
QWEN3_RERANKER_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)

# Jinja keeps message content as is. The content may be a plain string ("flat" messages) or a list of
# {"type": "text", "text": ...} parts ("structured" messages); both render the same text.
_CONTENT_MACRO = (
    "{%- macro text(m) -%}"
    "{%- if m.content is string -%}{{ m.content }}"
    "{%- else -%}{%- for part in m.content -%}{%- if part.type == 'text' -%}{{ part.text }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)

# query -> system turn, document -> user turn; other roles pass through (ChatML). The final assistant header
# comes from an expression: Jinja drops one trailing newline of a template *file*, which would silently change
# every score.
ZERANK_CHAT_TEMPLATE = (
    _CONTENT_MACRO + "{%- set ns = namespace(pair=false) -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'query' -%}{%- set role = 'system' -%}{%- set ns.pair = true -%}"
    "{%- elif m.role == 'document' -%}{%- set role = 'user' -%}{%- set ns.pair = true -%}"
    "{%- else -%}{%- set role = m.role -%}{%- endif -%}"
    "{{ '<|im_start|>' + role + '\\n' }}{{ text(m) }}{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt or ns.pair -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

QWEN3_RERANKER_CHAT_TEMPLATE = (
    _CONTENT_MACRO + "{%- set q = messages | selectattr('role', 'eq', 'query') | first -%}"
    "{%- set d = messages | selectattr('role', 'eq', 'document') | first -%}"
    "{{ '<|im_start|>system\\n"
    + QWEN3_RERANKER_SYSTEM.replace('"', '\\"')
    + "<|im_end|>\\n<|im_start|>user\\n' }}"
    "{{ '<Instruct>: ' }}{{ instruction if instruction is defined and instruction else '"
    + QWEN3_RERANKER_DEFAULT_INSTRUCTION
    + "' }}"
    "{{ '\\n<Query>: ' }}{{ text(q) }}{{ '\\n<Document>: ' }}{{ text(d) }}"
    "{{ '<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}"
)


def _torch() -> Any:
    from rankfunnel._optional import require

    return require("torch", "core")


@functools.lru_cache(maxsize=1)
def _load_tokenizer() -> Any:  # cached: loading the 11 MB tokenizer.json takes ~2 s; builders never mutate it
    from transformers import AutoTokenizer

    from rankfunnel.models import qwen3_tokenizer_path

    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_path()))


def _qwen3_config(
    vocab: int,
    *,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    intermediate: int,
    init_std: float,
    dtype: Any,
    tokenizer: Any,
) -> Any:
    from transformers import Qwen3Config

    if heads % kv_heads:
        raise InvalidInputError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads}).")
    return Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        initializer_range=init_std,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        architectures=["Qwen3ForCausalLM"],
        dtype=dtype,
    )


def _random_model(config: Any, *, seed: int, dtype: Any) -> Any:
    """A Qwen3ForCausalLM with N(0, init_std) weights and unit norms, built without a second init pass.

    The model is created on the meta device (no memory, no init), then materialised and filled once in
    ``dtype``: building the 4B shape this way takes seconds instead of minutes of default initialisation.
    """
    torch = _torch()
    from transformers import Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    model = model.to(dtype).to_empty(device="cpu")  # cast on meta first: no fp32 copy of a 4B model
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif p.dtype == torch.float32:
                p.normal_(0.0, config.initializer_range, generator=gen)
            else:  # draw fp32 in chunks and cast, so the values match whatever the dtype
                flat = p.view(-1)
                for start in range(0, flat.numel(), 1 << 24):
                    n = min(1 << 24, flat.numel() - start)
                    flat[start : start + n].copy_(torch.randn(n, generator=gen) * config.initializer_range)
    model.tie_weights()
    model.eval()
    return model


def _write_card(out: Path, title: str, body: str) -> None:
    (out / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: sentence-transformers\npipeline_tag: text-ranking\n"
        f"tags:\n- rankfunnel-test-model\n---\n\n# {title}\n\n{body}\n",
        encoding="utf-8",
    )


def _save(
    out_dir: str | Path,
    *,
    style: str,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    intermediate: int,
    seed: int,
    init_std: float,
    dtype: Any,
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _load_tokenizer()
    config = _qwen3_config(
        len(tok),
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        init_std=init_std,
        dtype=dtype,
        tokenizer=tok,
    )
    model = _random_model(config, seed=seed, dtype=dtype)
    model.save_pretrained(str(out))
    del model
    tok.save_pretrained(str(out))
    # Replace the saved (generic Qwen3) template: chat_template.jinja is the file transformers reads first.
    template = ZERANK_CHAT_TEMPLATE if style == "zerank" else QWEN3_RERANKER_CHAT_TEMPLATE
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    if style == "zerank":
        true_id, false_id = ZERANK_YES_ID, None
    else:
        true_id, false_id = QWEN3_RERANKER_YES_ID, QWEN3_RERANKER_NO_ID
    _write_sentence_transformers_modules(out, true_id, false_id)
    shape = f"{layers} layers x {hidden} hidden, {heads} heads / {kv_heads} KV heads, head_dim {head_dim}"
    if style == "zerank":
        _write_card(
            out,
            "Random zerank-2-shaped test reranker",
            f"Random weights ({shape}), the real Qwen3 tokenizer, zerank-2's prompt and "
            "`LogitScore(true_token_id=9454)`. For tests and speed benchmarks only.",
        )
    else:
        _write_card(
            out,
            "Random Qwen3-Reranker-shaped test reranker",
            f"Random weights ({shape}), the real Qwen3 tokenizer, Qwen3-Reranker's prompt and "
            "`LogitScore(true_token_id=9693, false_token_id=2152)`. For tests and speed benchmarks only.",
        )
    return out


def _write_sentence_transformers_modules(out: Path, true_id: int, false_id: int | None) -> None:
    """Module layout of a sentence-transformers CrossEncoder over a causal LM, as zerank-2 ships it.

    Written directly (the same files sentence-transformers 6.2 saves: modules.json, sentence_bert_config.json,
    config_sentence_transformers.json, 1_LogitScore/config.json) instead of loading and re-saving the model
    through sentence-transformers, which costs seconds per build. The decoder tests load every built folder
    with ``CrossEncoder`` and compare scores, so a format drift would fail them.
    """
    from importlib.metadata import version

    def dump(path: Path, obj: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")

    dump(
        out / "modules.json",
        [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.base.modules.transformer.Transformer",
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_LogitScore",
                "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore",
            },
        ],
    )
    dump(
        out / "sentence_bert_config.json",
        {
            "transformer_task": "text-generation",
            "modality_config": {
                "text": {"method": "forward", "method_output_name": "logits"},
                "message": {"method": "forward", "method_output_name": "logits", "format": "structured"},
            },
            "module_output_name": "causal_logits",
        },
    )
    # zerank-2: predict() returns the raw "Yes" logit (its card: sigmoid(logit / 5)); Qwen3-Reranker: sigmoid.
    activation = (
        "torch.nn.modules.linear.Identity" if false_id is None else "torch.nn.modules.activation.Sigmoid"
    )
    versions = {}
    for pkg, key in [
        ("torch", "pytorch"),
        ("sentence-transformers", "sentence_transformers"),
        ("transformers", "transformers"),
    ]:
        try:
            versions[key] = version(pkg)
        except Exception:  # noqa: BLE001 - informational only
            versions[key] = "unknown"
    dump(
        out / "config_sentence_transformers.json",
        {
            "__version__": versions,
            "activation_fn": activation,
            "default_prompt_name": None,
            "model_type": "CrossEncoder",
            "prompts": {},
        },
    )
    dump(
        out / "1_LogitScore" / "config.json",
        {"true_token_id": true_id, "false_token_id": false_id, "module_input_name": "causal_logits"},
    )


def build_tiny_zerank(
    out_dir: str | Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 16,
    seed: int = 0,
    style: str = "zerank",
) -> Path:
    """Save a tiny random zerank-2-shaped reranker (real Qwen3 tokenizer, zerank-2 prompt and modules).

    Args:
        out_dir: Folder to write (created if needed).
        layers: Decoder layers.
        hidden: Hidden size.
        heads: Query heads.
        kv_heads: Key/value heads (grouped-query attention).
        head_dim: Size of one head.
        seed: Seed of the random weights.
        style: ``"zerank"``, or ``"qwen3-reranker"`` for the same shape in the Qwen3-Reranker convention
            (:func:`build_tiny_qwen3_reranker`).

    Returns:
        ``out_dir`` as a Path.

    Examples:
        >>> from sentence_transformers import CrossEncoder  # doctest: +SKIP
        >>> path = build_tiny_zerank("/tmp/tiny-zerank")  # doctest: +SKIP
        >>> CrossEncoder(str(path)).predict([("q", "d")])  # doctest: +SKIP
    """
    return _save(
        out_dir,
        style=style,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=4 * hidden,
        seed=seed,
        init_std=0.1,
        dtype=_torch().float32,
    )


def build_tiny_qwen3_reranker(out_dir: str | Path, **shape: int) -> Path:
    """Save a tiny random Qwen3-Reranker-shaped model (yes=9693 minus no=2152, its instruction prompt).

    ``shape``: the keyword options of :func:`build_tiny_zerank` (``layers``, ``hidden``, ..., ``seed``).

    Examples:
        >>> path = build_tiny_qwen3_reranker("/tmp/tiny-qwen3-reranker")  # doctest: +SKIP
    """
    return build_tiny_zerank(out_dir, style="qwen3-reranker", **shape)


def build_qwen3_shaped(
    out_dir: str | Path,
    *,
    layers: int = 36,
    hidden: int = 2560,
    heads: int = 32,
    kv_heads: int = 8,
    head_dim: int = 128,
    intermediate: int = 9728,
    dtype: Any = "bf16",
    style: str = "zerank",
    seed: int = 0,
) -> Path:
    """Save a random Qwen3 reranker of any shape (defaults: the Qwen3-4B shape of zerank-2) for benchmarks.

    Args:
        out_dir: Folder to write.
        layers: Decoder layers (Qwen3-4B: 36).
        hidden: Hidden size (2560).
        heads: Query heads (32).
        kv_heads: Key/value heads (8).
        head_dim: Head size (128).
        intermediate: MLP size (9728).
        dtype: ``"bf16"``, ``"fp16"``, ``"fp32"`` or a torch dtype; the weights are saved in it.
        style: ``"zerank"`` or ``"qwen3-reranker"``.
        seed: Seed of the random weights.

    Examples:
        >>> build_qwen3_shaped("/tmp/q4x1024", layers=4, hidden=1024, heads=16, kv_heads=8,
        ...                    head_dim=64, intermediate=3072, dtype="fp32")  # doctest: +SKIP
    """
    torch = _torch()
    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    torch_dtype = names.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise InvalidInputError(f"dtype={dtype!r} is unknown; use bf16, fp16 or fp32.")
    if style not in {"zerank", "qwen3-reranker"}:
        raise InvalidInputError(f"style={style!r} is unknown; use 'zerank' or 'qwen3-reranker'.")
    return _save(
        out_dir,
        style=style,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        seed=seed,
        init_std=0.02,
        dtype=torch_dtype,
    )
