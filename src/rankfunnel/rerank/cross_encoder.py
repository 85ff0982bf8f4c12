"""The reference reranker: a sentence-transformers ``CrossEncoder`` (BERT-style and causal-LM models)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError, ModelNotFoundError, RankfunnelError, RerankerUnavailableError
from rankfunnel.models import choose_device, choose_dtype, resolve_model, warn_if_non_commercial
from rankfunnel.rerank.base import BaseReranker, Calibration, check_pairs

log = logging.getLogger(__name__)

ZERANK_TEMPERATURE = 5.0


def unavailable(name: str, exc: BaseException) -> RerankerUnavailableError:
    """A :class:`RerankerUnavailableError` that says which model, why, and how to fix it."""
    if isinstance(exc, ModelNotFoundError):  # its message already says what is missing and how to fix it
        return RerankerUnavailableError(
            f"Reranker {name!r} could not be loaded: {str(exc).rstrip('.')} (--reranker none skips reranking)."
        )
    cause = f"{type(exc).__name__}: {exc}".strip()
    if len(cause) > 400:
        cause = cause[:400] + "..."
    return RerankerUnavailableError(
        f"Reranker {name!r} could not be loaded ({cause}). Fix: pass an existing local model folder, "
        "or a hub id with network access (unset HF_HUB_OFFLINE), or use --reranker none to skip reranking."
    )


def is_zerank(name: str, model: Any) -> bool:
    """True for zerank models: the name says so, or the model ends in a LogitScore on one token only."""
    if "zerank" in name.lower():
        return True
    for module in getattr(model, "_modules", {}).values():
        if type(module).__name__ == "LogitScore" and getattr(module, "false_token_id", 0) is None:
            return True
    return False


class CrossEncoderReranker(BaseReranker):
    """Reranks with ``sentence_transformers.CrossEncoder``: BERT cross-encoders and causal-LM rerankers.

    ``predict`` returns RAW scores (the logit; no sigmoid), so thresholds can be calibrated explicitly with
    :class:`~rankfunnel.rerank.base.Calibration`. zerank models (e.g. ``zeroentropy/zerank-2-reranker``, a
    Qwen3 causal LM scored by the "Yes" logit) default to ``sigmoid(logit / 5)``, others to
    ``sigmoid(logit)``.
    Pairs are scored in length-sorted batches (sentence-transformers sorts by length and restores the order).
    This is the reference path; :func:`rankfunnel.rerank.load_reranker` picks faster scorers where they apply.

    Args:
        model: Hub id or local folder (resolved with :func:`rankfunnel.models.resolve_model`).
        device: ``cuda``, ``mps``, ``cpu`` or None/``auto`` to choose.
        dtype: ``fp32``, ``fp16``, ``bf16`` or None/``auto`` (bf16 on GPU where supported, fp32 on CPU).
        batch_size: Pairs per forward pass (8-64 typical).
        max_length: Token limit per pair; None keeps the model's own limit.
        calibration: Normalisation of raw scores; None picks T=5 for zerank models, T=1 otherwise.
        trust_remote_code: Allow model repositories that ship their own code.

    Raises:
        RerankerUnavailableError: The model cannot be resolved or loaded; the message says why and how
            to fix it.

    Examples:
        >>> r = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
        >>> r.rank("IndexError?", ["list index out of range ...", "pricing rules ..."])  # doctest: +SKIP
        [(0, 7.91, 0.9996), (1, -11.2, 1.4e-05)]
    """

    def __init__(self, model: str | Path, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 32, max_length: int | None = None, calibration: Calibration | None = None,
                 trust_remote_code: bool = False) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}.")
        if max_length is not None and max_length < 8:
            raise InvalidInputError(f"max_length must be >= 8 tokens, got {max_length}.")
        self.name = str(model)
        self.batch_size = int(batch_size)
        try:
            path = resolve_model(self.name)
        except RankfunnelError as exc:
            raise unavailable(self.name, exc) from exc
        self.path = path
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self.licence = warn_if_non_commercial(self.name, path)
        self.model = self._load(path, max_length, trust_remote_code)
        if calibration is None:
            zerank = is_zerank(self.name, self.model)
            calibration = Calibration(temperature=ZERANK_TEMPERATURE if zerank else 1.0)
        self.calibration = calibration

    def _load(self, path: str, max_length: int | None, trust_remote_code: bool) -> Any:
        import torch
        from sentence_transformers import CrossEncoder

        try:
            model = CrossEncoder(path, device=self.device, max_length=max_length,
                                 activation_fn=torch.nn.Identity(), trust_remote_code=trust_remote_code,
                                 model_kwargs={"dtype": self.dtype})
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one plain, actionable error
            raise unavailable(self.name, exc) from exc
        model.eval()
        return model

    @property
    def max_length(self) -> int | None:
        """The token limit per pair that the tokenizer applies."""
        return getattr(self.model, "max_length", None)

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw scores (float32 logits, shape ``(len(pairs),)``) for (query, document) pairs, input order kept.

        Raises:
            InvalidInputError: A pair is not two strings.
            RerankerUnavailableError: The model failed while scoring (e.g. out of memory).
        """
        import torch

        checked = check_pairs(pairs, self.max_length or 512)
        if not checked:
            return np.zeros(0, dtype=np.float32)
        try:
            scores = self.model.predict(checked, batch_size=self.batch_size,
                                        activation_fn=torch.nn.Identity(), convert_to_numpy=True,
                                        show_progress_bar=len(checked) > 2000)
        except Exception as exc:  # noqa: BLE001 - surface scoring failures as one library error
            raise RerankerUnavailableError(
                f"Reranker {self.name!r} failed while scoring {len(checked)} pairs "
                f"({type(exc).__name__}: {exc}). Fix: lower batch_size or max_length, or use a smaller model."
            ) from exc
        arr = np.asarray(scores, dtype=np.float32)
        if arr.ndim == 2:  # multi-label heads: the last column is the "relevant" class by convention
            arr = arr[:, -1]
        return arr.reshape(len(checked))
