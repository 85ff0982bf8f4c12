"""Rerankers and :func:`load_reranker`, which turns a spec string into a reranker.

Backends: :class:`~rankfunnel.rerank.cross_encoder.CrossEncoderReranker` (sentence-transformers; reference),
``rankfunnel.rerank.decoder.DecoderReranker`` (fast zerank-2 / Qwen3-Reranker scorer),
:class:`~rankfunnel.rerank.encoder_fast.FastEncoderReranker` (CPU path for BERT cross-encoders:
token-budget batches, bf16 / fp32 / opt-in int8),
:class:`~rankfunnel.rerank.cascade.CascadeReranker`, :class:`~rankfunnel.rerank.fake.FakeReranker` and
``rankfunnel.rerank.remote`` (an HTTP reranker).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rankfunnel.errors import (
    InvalidInputError,
    OptionalDependencyError,
    RankfunnelError,
    RerankerUnavailableError,
)
from rankfunnel.models import DEFAULT_CPU_RERANKER, DEFAULT_GPU_RERANKER, choose_device, resolve_model
from rankfunnel.rerank.base import BaseReranker, Calibration

log = logging.getLogger(__name__)

__all__ = ["BaseReranker", "Calibration", "default_reranker_name", "load_reranker"]

_CUTOFF = re.compile(r"^(?P<spec>.+):(?P<cutoff>\d+)$")


def default_reranker_name(device: str | None = None) -> str:
    """The default reranker: zerank-2 on a GPU, the MiniLM-L6 MS MARCO cross-encoder on CPU (and MPS).

    Examples:
        >>> default_reranker_name("cpu")
        'cross-encoder/ms-marco-MiniLM-L6-v2'
    """
    dev = choose_device(device) if device in (None, "auto") else str(device)
    return DEFAULT_GPU_RERANKER if dev.startswith("cuda") else DEFAULT_CPU_RERANKER


def _split_stage(part: str) -> tuple[str, int | None]:
    """``"name:100"`` -> ``("name", 100)``; a bare ``"remote:http://host:8000"`` keeps 8000 as its port."""
    m = _CUTOFF.match(part)
    if not m:
        return part, None
    spec, cutoff = m.group("spec"), int(m.group("cutoff"))
    if spec.startswith("remote:"):
        url = urlparse(spec[len("remote:"):])
        if not url.netloc or (url.port is None and url.path in ("", "/")):
            return part, None  # "remote:http://host:8000": the number is a port, not a cut-off
    return spec, cutoff


def _call_with_supported(factory: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``factory`` with only the keyword arguments its signature accepts (for sibling backends)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return factory(*args, **kwargs)
    return factory(*args, **{k: v for k, v in kwargs.items() if k in params and v is not None})


def _architecture(path: str) -> tuple[str, str]:
    """``(architecture, model_type)`` from the model's config.json, local or hub ("" when unknown)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        try:  # a hub id: config.json is small and cached by huggingface_hub
            from huggingface_hub import hf_hub_download

            cfg = Path(hf_hub_download(path, "config.json"))
        except Exception as exc:  # noqa: BLE001 - unknown architecture: the loader reports real problems
            log.info("Could not read config.json of %s (%s).", path, exc)
            return "", ""
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "", ""
    arch = (data.get("architectures") or [""])[0] or ""
    return str(arch), str(data.get("model_type", ""))


def _load_remote(url: str, opts: dict[str, Any]) -> BaseReranker:
    try:
        remote = importlib.import_module("rankfunnel.rerank.remote")
    except ImportError as exc:
        raise RerankerUnavailableError(
            f"Remote reranker {url!r} needs rankfunnel.rerank.remote, which this installation lacks ({exc}). "
            "Fix: upgrade rankfunnel, or pass a local model name instead of 'remote:URL'."
        ) from exc
    factory = getattr(remote, "RemoteReranker", None)
    if factory is None:
        raise RerankerUnavailableError(
            "rankfunnel.rerank.remote defines no RemoteReranker; upgrade rankfunnel.")
    return _call_with_supported(factory, url, **opts)  # type: ignore[no-any-return]


def _load_decoder(path: str, name: str, opts: dict[str, Any]) -> BaseReranker | None:
    """The fast decoder scorer when it is installed and recognises the model, else None."""
    try:
        decoder = importlib.import_module("rankfunnel.rerank.decoder")
    except ImportError as exc:
        log.info("rankfunnel.rerank.decoder is unavailable (%s); using the sentence-transformers path.", exc)
        return None
    try:
        if not decoder.is_decoder_reranker(path):
            return None
    except Exception as exc:  # noqa: BLE001 - an unreadable config just means "not recognised"
        log.info("Could not tell whether %s is a decoder reranker (%s).", name, exc)
        return None
    return _call_with_supported(decoder.DecoderReranker, path, **opts)  # type: ignore[no-any-return]


def _load_one(spec: str, opts: dict[str, Any], fast: bool) -> BaseReranker:
    if spec == "fake":
        return _call_with_supported(_fake_cls(), calibration=opts.get("calibration"))  # type: ignore[no-any-return]
    if spec.startswith("remote:"):
        return _load_remote(spec[len("remote:"):], opts)
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker, unavailable

    try:
        path = resolve_model(spec)
    except RankfunnelError as exc:
        raise unavailable(spec, exc) from exc
    arch, model_type = _architecture(path)
    if fast:
        if arch.endswith("ForCausalLM") or not arch:
            reranker = _load_decoder(path, spec, opts)
            if reranker is not None:
                reranker.name = spec
                return reranker
        elif arch.endswith("ForSequenceClassification"):
            device = choose_device(opts.get("device"))
            if device == "cpu":
                from rankfunnel.rerank import encoder_fast

                if encoder_fast.fast_path_available(model_type):
                    try:
                        fast_reranker = _call_with_supported(encoder_fast.FastEncoderReranker, spec, **opts)
                        return fast_reranker  # type: ignore[no-any-return]
                    except OptionalDependencyError as exc:
                        log.warning("CPU fast path unavailable (%s); using sentence-transformers.", exc)
    return _call_with_supported(CrossEncoderReranker, spec, **opts)  # type: ignore[no-any-return]


def _fake_cls() -> Any:
    from rankfunnel.rerank.fake import FakeReranker

    return FakeReranker


def load_reranker(spec: str | None, *, device: str | None = None, dtype: str | None = None,
                  batch_size: int | None = None, fast: bool = True, calibration: Calibration | None = None,
                  max_length: int | None = None) -> BaseReranker | None:
    """Build a reranker from a spec string.

    Specs:
        - ``"none"``: no reranking (returns None).
        - ``"auto"`` (or None): :func:`default_reranker_name` for the device.
        - ``"fake"``: :class:`~rankfunnel.rerank.fake.FakeReranker` (token overlap; tests and demos).
        - a hub id or local folder: a decoder reranker (zerank-2, Qwen3-Reranker) goes to the fast
          ``DecoderReranker`` when ``fast`` and it is installed; a BERT-style cross-encoder on CPU goes
          to :class:`~rankfunnel.rerank.encoder_fast.FastEncoderReranker` when ``fast``; everything
          else (and ``fast=False``, the reference path) to
          :class:`~rankfunnel.rerank.cross_encoder.CrossEncoderReranker`.
        - ``"remote:URL"``: an HTTP reranker (``rankfunnel.rerank.remote``).
        - ``"A:100,B:20"``: a :class:`~rankfunnel.rerank.cascade.CascadeReranker`; A reads the top 100,
          B the top 20 of A's order. Each part is any spec above except ``none``.

    Args:
        spec: The spec string.
        device: ``cuda``, ``mps``, ``cpu`` or None/``auto``.
        dtype: ``fp32``, ``fp16``, ``bf16`` or None/``auto``.
        batch_size: Pairs per forward pass (backend default when None).
        fast: Use the fast scorers where they apply; False selects the sentence-transformers reference.
        calibration: Normalisation for a single model (cascades use their last stage's).
        max_length: Token limit per pair (backend default when None).

    Raises:
        RerankerUnavailableError: A model cannot be resolved or loaded; the message names the fix.
        InvalidInputError: The spec is malformed.

    Examples:
        >>> load_reranker("none") is None
        True
        >>> load_reranker("fake").name
        'fake'
        >>> load_reranker("fake:50,fake:10").name  # doctest: +SKIP
        'fake:50,fake:10'
    """
    text = "auto" if spec is None else str(spec).strip()
    if not text:
        raise InvalidInputError(
            "The reranker spec is empty: pass a model name, 'none', 'fake' or 'A:100,B:20'.")
    if text.lower() == "none":
        return None
    if text.lower() == "auto":
        text = default_reranker_name(device)
    opts: dict[str, Any] = {"device": device, "dtype": dtype, "batch_size": batch_size,
                            "calibration": calibration, "max_length": max_length}
    parts = [p.strip() for p in text.split(",")]
    stages = [_split_stage(p) for p in parts]
    if len(stages) == 1 and stages[0][1] is None:
        return _load_one(stages[0][0], opts, fast)
    if any(not s or s.lower() == "none" for s, _ in stages):
        raise InvalidInputError(f"Cascade {text!r} has an empty or 'none' stage: write it like 'A:100,B:20'.")
    from rankfunnel.rerank.cascade import CascadeReranker

    stage_opts = {**opts, "calibration": None}
    built = [(_load_one(s, stage_opts if i < len(stages) - 1 else opts, fast), c)
             for i, (s, c) in enumerate(stages)]
    return CascadeReranker(built, name=text)
