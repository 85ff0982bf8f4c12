"""Model cards (README.md with Hugging Face front matter) for trained and distilled rerankers."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Licences of the shared evaluation datasets (../shared/datasets/README.md), so that a card trained on them
# says what the data allows even when the user did not pass --data-licence.
KNOWN_DATA_LICENCES: dict[str, str] = {
    "scifact": "CC BY-NC 2.0 (allenai/scifact): non-commercial",
    "nfcorpus": "academic use only (NFCorpus)",
    "cosqa": "C-UDA (CoSQA)",
    "legal_summarization": "Apache-2.0",
    "cranfield": "public research collection, no explicit licence",
    "cisi": "public research collection, no explicit licence",
    "medline_glasgow": "public research collection, no explicit licence",
    "adi": "public research collection, no explicit licence",
}


def data_licence_note(dataset_name: str, given: str | None) -> str:
    """The data licence line of a card: the user's value, else a known one, else a prompt to check."""
    if given:
        return given
    return KNOWN_DATA_LICENCES.get(
        dataset_name, "unknown: check the data's terms before deploying this model"
    )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_model_card(
    out_dir: str | Path,
    *,
    title: str,
    base_model: str,
    model_licence: str | None,
    data_name: str,
    data_licence: str,
    summary: str,
    settings: Mapping[str, Any],
    metrics: Mapping[str, Any],
    extra: str = "",
    domain: str | None = None,
) -> Path:
    """Write ``README.md`` (and ``rankfunnel_training.json`` with the same facts) into ``out_dir``.

    The card is written with huggingface_hub's ``ModelCard`` / ``ModelCardData``. Its front matter's
    ``license`` is the licence of the weights, i.e. the base model's (``model_licence``); the training data's
    terms are stated in the body because they may restrict use of the result. ``domain`` is the domain the
    model was trained for (None: none declared): ``reranker="auto"`` uses a local model only for searches
    that declare that domain (:func:`rankfunnel.rerank.resolve.resolve_reranker`).
    """
    from huggingface_hub import ModelCard, ModelCardData

    out = Path(out_dir)
    licence = (model_licence or "unknown").lower()
    data = ModelCardData(
        license=licence,
        base_model=base_model,
        library_name="sentence-transformers",
        pipeline_tag="text-ranking",
        language=["en"],
        tags=["cross-encoder", "reranker", "rankfunnel"],
    )
    if domain:  # a custom front-matter key; ModelCardData keeps unknown keys
        data.rankfunnel_domain = domain  # type: ignore[attr-defined]
    domain_line = (
        f"Trained for the domain `{domain}`: `reranker='auto'` uses it only for searches in that domain."
        if domain
        else "No domain declared: `reranker='auto'` never picks it; name the folder to use it."
    )
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in settings.items())
    mrows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items()) or "| (none) | |"
    body = f"""
# {title}

{summary}

## Use

```python
from sentence_transformers import CrossEncoder
model = CrossEncoder("{out.name}")
scores = model.predict([("query", "document text")])  # sigmoid scores; raw logits with activation_fn=Identity
```

With rankfunnel: `rankfunnel search INDEX "query" --reranker {out.name}` (any `--reranker DIR` option).

{domain_line}

## Licence

- Weights: `{licence}`, the licence of the base model `{base_model}`.
- Training data `{data_name}`: {data_licence}. Data terms can restrict how a model trained on the data may be
  used; check them before any commercial deployment.

## Training settings

| setting | value |
|---|---|
{rows}

## Metrics

| metric | value |
|---|---|
{mrows}
{extra}
Built with `rankfunnel` on {platform.machine()} ({datetime.now(UTC).strftime("%Y-%m-%d")}).
"""
    path = out / "README.md"
    ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").save(path)
    facts = {
        "title": title,
        "base_model": base_model,
        "license": licence,
        "data": data_name,
        "domain": domain,
        "data_licence": data_licence,
        "settings": dict(settings),
        "metrics": dict(metrics),
    }
    (out / "rankfunnel_training.json").write_text(json.dumps(facts, indent=2, default=str), encoding="utf-8")
    return path
