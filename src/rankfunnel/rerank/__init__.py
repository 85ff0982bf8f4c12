"""Rerankers and :func:`load_reranker`, which turns a spec string into a reranker.

Backends: :class:`~rankfunnel.rerank.cross_encoder.CrossEncoderReranker` (sentence-transformers; reference),
``rankfunnel.rerank.decoder.DecoderReranker`` (fast zerank-2 / Qwen3-Reranker scorer),
:class:`~rankfunnel.rerank.encoder_fast.FastEncoderReranker` (CPU path for BERT cross-encoders:
token-budget batches, bf16 / fp32 / opt-in int8),
:class:`~rankfunnel.rerank.cascade.CascadeReranker`, :class:`~rankfunnel.rerank.fake.FakeReranker` and
``rankfunnel.rerank.remote`` (an HTTP reranker).
"""

from __future__ import annotations

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
)
from rankfunnel.models import DEFAULT_CPU_RERANKER, DEFAULT_GPU_RERANKER, choose_device, resolve_model
from rankfunnel.rerank.base import BaseReranker
from rankfunnel.rerank.calibration import Calibration
from rankfunnel.rerank.resolve import Resolution, load_reranker_or_reason, resolve_reranker

log = logging.getLogger(__name__)

__all__ = [
    "BaseReranker",
    "Calibration",
    "Resolution",
    "default_reranker_name",
    "load_reranker",
    "load_reranker_or_reason",
    "resolve_reranker",
]

_CUTOFF = re.compile(r"^(?P<spec>.+):(?P<cutoff>\d+)$")


def default_reranker_name(device: str | None = None) -> str:
    """The default reranker: zerank-2 on a GPU, the MiniLM-L6 MS MARCO cross-encoder on CPU (and MPS).

    What ``auto`` resolves to when the model can be loaded (:func:`resolve_reranker` decides that).

    Examples:
        >>> default_reranker_name("cpu")
        'cross-encoder/ms-marco-MiniLM-L6-v2'
    """
    dev = choose_device(device) if device in (None, "auto") else str(device)
    return DEFAULT_GPU_RERANKER if dev.startswith("cuda") else DEFAULT_CPU_RERANKER


def split_stage(part: str) -> tuple[str, int | None]:
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


def _load_one(spec: str, o: dict[str, Any], fast: bool) -> BaseReranker:
    """One model. ``o`` holds every loader option; each backend gets exactly the ones it understands."""
    if spec == "fake":
        from rankfunnel.rerank.fake import FakeReranker

        return FakeReranker(calibration=o["calibration"])
    if spec.startswith("remote:"):
        from rankfunnel.rerank.remote import RemoteReranker

        return RemoteReranker(spec[len("remote:"):], api_key=o["api_key"], calibration=o["calibration"])
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker, unavailable

    try:
        path = resolve_model(spec, offline=o["offline"])  # offline: a cached hub id becomes its local folder
    except RankfunnelError as exc:
        raise unavailable(spec, exc) from exc
    arch, model_type = _architecture(path)
    reranker: BaseReranker | None = None
    if fast and (arch.endswith("ForCausalLM") or not arch):
        from rankfunnel.rerank import decoder

        if decoder.is_decoder_reranker(path):
            # the decoder's "max_doc_tokens" is its per-document token limit (longer documents are chunked)
            reranker = decoder.DecoderReranker(
                path, device=o["device"], dtype=o["dtype"], calibration=o["calibration"],
                max_batch_size=o["batch_size"], **({} if o["max_length"] is None
                                                  else {"max_doc_tokens": o["max_length"]}))
    elif fast and arch.endswith("ForSequenceClassification") and choose_device(o["device"]) == "cpu":
        from rankfunnel.rerank import encoder_fast

        if encoder_fast.fast_path_available(model_type):
            try:
                reranker = encoder_fast.FastEncoderReranker(
                    path, device=o["device"], route=o["route"], max_length=o["max_length"],
                    calibration=o["calibration"],
                    **({} if o["batch_size"] is None else {"batch_size": o["batch_size"]}))
            except OptionalDependencyError as exc:
                log.warning("CPU fast path unavailable (%s); using sentence-transformers.", exc)
    if reranker is None:
        reranker = CrossEncoderReranker(
            path, device=o["device"], dtype=o["dtype"], max_length=o["max_length"], calibration=o["calibration"],
            **({} if o["batch_size"] is None else {"batch_size": o["batch_size"]}))
    reranker.name = spec  # the name as given (a hub id stays a hub id even when loaded from the cache)
    return reranker


def load_reranker(spec: str | None, *, device: str | None = None, dtype: str | None = None,
                  batch_size: int | None = None, fast: bool = True, calibration: Calibration | None = None,
                  max_length: int | None = None, route: str = "auto", api_key: str | None = None,
                  offline: bool | None = None, trained: str | Path | None = None,
                  domain: str | None = None) -> BaseReranker | None:
    """Build a reranker from a spec string.

    Specs:
        - ``"none"``: no reranking (returns None).
        - ``"auto"`` (or None): what :func:`resolve_reranker` picks (zerank-2 on a GPU, MiniLM-L6 MS MARCO on
          a CPU, a trained folder for its declared domain); raises when it finds nothing it can load.
        - ``"fake"``: :class:`~rankfunnel.rerank.fake.FakeReranker` (token overlap; tests and demos).
        - a hub id or local folder: a decoder reranker (zerank-2, Qwen3-Reranker) goes to the fast
          ``DecoderReranker`` when ``fast``; a BERT-style cross-encoder on CPU goes to
          :class:`~rankfunnel.rerank.encoder_fast.FastEncoderReranker` when ``fast``; everything
          else (and ``fast=False``, the reference path) to
          :class:`~rankfunnel.rerank.cross_encoder.CrossEncoderReranker`.
        - ``"remote:URL"``: an HTTP reranker (:class:`~rankfunnel.rerank.remote.RemoteReranker`).
        - ``"A:100,B:20"``: a :class:`~rankfunnel.rerank.cascade.CascadeReranker`; A reads the top 100,
          B the top 20 of A's order. Each part is any spec above except ``none`` and ``auto``. A last part
          ``stop=M`` stops a query early when a stage's calibrated top-1 leads its top-2 by at least ``M``.

    Args:
        spec: The spec string.
        device: ``cuda``, ``mps``, ``cpu`` or None/``auto``.
        dtype: ``fp32``, ``fp16``, ``bf16`` or None/``auto``.
        batch_size: Pairs per forward pass (backend default when None).
        fast: Use the fast scorers where they apply; False selects the sentence-transformers reference.
        calibration: Normalisation for a single model (cascades use their last stage's).
        max_length: Token limit per pair (backend default when None; the decoder's per-document limit).
        route: The CPU cross-encoder route (:data:`rankfunnel.rerank.encoder_fast.ROUTES`, or ``auto``).
        api_key: The key sent to a ``remote:`` reranker's API.
        offline: Never use the model hub (hub ids load from its cache); None: huggingface_hub's own setting.
        trained, domain: A locally trained folder that ``auto`` may use for ``domain`` (see
            :func:`resolve_reranker`).

    Raises:
        RerankerUnavailableError: A model cannot be resolved or loaded; the message names the fix.
        InvalidInputError: The spec or an option is malformed.

    Examples:
        >>> load_reranker("none") is None
        True
        >>> load_reranker("fake").name
        'fake'
        >>> load_reranker("fake:50,fake:10").name  # doctest: +SKIP
        'fake:50,fake:10'
    """
    from rankfunnel.errors import RerankerUnavailableError

    text = "auto" if spec is None else str(spec).strip()
    if not text:
        raise InvalidInputError(
            "The reranker spec is empty: pass a model name, 'none', 'fake' or 'A:100,B:20'.")
    if text.lower() == "none":
        return None
    if route != "auto":
        from rankfunnel.rerank.encoder_fast import ROUTES

        if route not in ROUTES:
            raise InvalidInputError(f"CPU route {route!r} is unknown; use one of auto, {', '.join(ROUTES)}.")
    if text.lower() == "auto":
        res = resolve_reranker(text, device=device, offline=offline, trained=trained, domain=domain)
        if res.spec is None:
            raise RerankerUnavailableError(res.reason)
        text = res.spec
    opts: dict[str, Any] = {"device": device, "dtype": dtype, "batch_size": batch_size, "calibration": calibration,
                            "max_length": max_length, "route": route, "api_key": api_key, "offline": offline}
    parts = [p.strip() for p in text.split(",")]
    early_stop = None
    if len(parts) > 2 and parts[-1].lower().startswith("stop="):
        try:
            early_stop = float(parts[-1][len("stop="):])
        except ValueError:
            raise InvalidInputError(
                f"Cascade {text!r}: {parts[-1]!r} is not stop=M with M a calibrated score lead (0-1), "
                "like 'A:100,B:20,stop=0.3'.") from None
        parts = parts[:-1]
    stages = [split_stage(p) for p in parts]
    if len(stages) == 1 and stages[0][1] is None:
        return _load_one(stages[0][0], opts, fast)
    if any(not s or s.lower() in {"none", "auto"} for s, _ in stages):
        raise InvalidInputError(
            f"Cascade {text!r} has an empty, 'none' or 'auto' stage: name each model, like 'A:100,B:20'.")
    from rankfunnel.rerank.cascade import CascadeReranker

    stage_opts = {**opts, "calibration": None}
    built = [(_load_one(s, stage_opts if i < len(stages) - 1 else opts, fast), c)
             for i, (s, c) in enumerate(stages)]
    return CascadeReranker(built, name=text, early_stop=early_stop)
