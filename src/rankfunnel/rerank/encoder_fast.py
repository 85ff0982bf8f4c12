"""A faster CPU path for BERT-style cross-encoders: token-budget batches, OpenVINO, and bf16 / int8 compute.

Token-budget batching (:mod:`rankfunnel.rerank.batching`, instead of sentence-transformers' fixed-count batches)
is the part that removes padding waste: pairs are tokenised once, sorted by token length, and cut into batches
whose padded size (``rows x longest row``) stays under ``token_budget``; scores come back in input order.
Compute routes:

- ``torch-int8``: ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (int8 weights, fbgemm).
- ``torch-bf16``: bf16 weights, for CPUs with AMX / AVX512-BF16 (oneDNN picks the kernels).
- ``onnx-fp32`` / ``onnx-int8``: the model exported once with ``torch.onnx``, optionally dynamically quantised
  with ``onnxruntime.quantization``, cached beside the model (or under ``~/.cache/rankfunnel``).
- ``openvino-fp32`` / ``openvino-bf16`` / ``openvino-int8``: the model converted once to OpenVINO and run by its
  CPU plugin; int8 is static, calibrated quantisation with NNCF (:mod:`rankfunnel.rerank.openvino_cache`),
  with bf16 for the remaining ops where the CPU has native bf16.
- ``torch-fp32``: the same batching in full precision (the reference for agreement checks).

``route="auto"`` uses :func:`default_route`, chosen by measurement (``bench/rerank_encoder.py`` for speed,
``bench/route_quality.py`` for NDCG@10 with a trained reranker on SciFact and NFCorpus; ``docs/benchmarks.md``):
OpenVINO when it is installed (``rankfunnel[openvino]``, part of ``make setup``), else eager torch; bf16 where
the CPU has native bf16 (AMX / AVX512-BF16), fp32 elsewhere. bf16 stayed within 0.001 NDCG@10 of fp32 on both
datasets and OpenVINO bf16 was 3.1x sentence-transformers on 100 pairs (eager torch bf16: 1.7x). int8 is never
the default: static ``openvino-int8`` was 4.3-4.9x and moved NDCG@10 by -0.001 and -0.003 with the packaged
calibration set (within the 0.005 bar, but the set was picked on those datasets), and dynamic int8 (torch,
ONNX) lost up to 0.030; users who want int8 opt in, ideally calibrating with their own pairs. Scores agree with
:class:`~rankfunnel.rerank.cross_encoder.CrossEncoderReranker` to float tolerance on ``torch-fp32`` and
``openvino-fp32`` and in rank (Spearman) on the reduced-precision routes.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError, RankfunnelError, RerankerUnavailableError
from rankfunnel.models import resolve_model, warn_if_non_commercial
from rankfunnel.rerank.base import BaseReranker, Calibration, check_pairs
from rankfunnel.rerank.batching import token_budget_batches
from rankfunnel.rerank.cross_encoder import unavailable
from rankfunnel.rerank.onnx_cache import MODEL_INPUTS, OnnxEncoder
from rankfunnel.rerank.openvino_cache import OpenVinoEncoder

log = logging.getLogger(__name__)

ROUTES = ("torch-fp32", "torch-int8", "torch-bf16", "onnx-fp32", "onnx-int8",
          "openvino-fp32", "openvino-bf16", "openvino-int8")
# Padded tokens per forward pass: eager torch gains from big batches (16k); OpenVINO was fastest with 1-2k-token
# batches (probes in docs/benchmarks.md).
DEFAULT_TOKEN_BUDGET = {"torch": 16384, "onnx": 16384, "openvino": 2048}
SUPPORTED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "electra", "distilbert", "deberta-v2"})


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AMX-BF16 or AVX512-BF16 (Linux ``/proc/cpuinfo`` flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        return False
    return False


def openvino_available() -> bool:
    """True when the ``openvino`` package (``rankfunnel[openvino]``) is importable."""
    return importlib.util.find_spec("openvino") is not None


def default_route() -> str:
    """The fastest route that keeps NDCG@10 within 0.001 of fp32 (``docs/benchmarks.md``).

    Pass ``route=`` to :class:`FastEncoderReranker` (``load_reranker(..., route=)``, the CLI's ``--cpu-route``
    / ``RANKFUNNEL_CPU_ROUTE``) to choose another one.

    OpenVINO when installed, else eager torch; bf16 on CPUs with native bf16 (AMX / AVX512-BF16), fp32
    elsewhere. Never int8: static int8 (``openvino-int8``) came within 0.001-0.003 NDCG@10 of fp32 and dynamic
    int8 lost up to 0.030, against 0.0005 for bf16, so int8 is an opt-in to measure on your data.
    """
    engine = "openvino" if openvino_available() else "torch"
    return f"{engine}-bf16" if cpu_has_native_bf16() else f"{engine}-fp32"


def fast_path_available(model_type: str) -> bool:
    """True when the CPU fast path supports this ``config.model_type`` (encoder-only classifiers)."""
    return model_type in SUPPORTED_MODEL_TYPES


class FastEncoderReranker(BaseReranker):
    """CPU reranker for BERT-style cross-encoders: token-budget batches plus an int8 / bf16 / ONNX route.

    Args:
        model: Hub id or local folder of a sequence-classification cross-encoder.
        device: Only ``cpu`` (or None/``auto``) is supported; use ``CrossEncoderReranker`` on GPUs.
        route: One of :data:`ROUTES`, or ``auto`` for :func:`default_route`.
        token_budget: Upper bound on padded tokens per forward pass (bounds memory, removes padding waste);
            default per route (:data:`DEFAULT_TOKEN_BUDGET`).
        batch_size: Upper bound on pairs per forward pass.
        max_length: Token limit per pair (longest-first truncation, like sentence-transformers); default the
            model's limit.
        calibration: Normalisation of raw scores; default ``sigmoid(logit)``.
        threads: torch intra-op threads for the torch routes / onnxruntime session threads; None leaves the
            torch setting alone and gives onnxruntime the torch setting.
        cache_dir: Where exported ONNX / OpenVINO files go when the model folder is not writable.
        calibration_pairs: Real (query, document) pairs from your domain to calibrate ``openvino-int8``;
            default the packaged sample corpus.

    Examples:
        >>> r = FastEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
        >>> r.score("IndexError?", ["list index out of range ...", "pricing rules"])  # doctest: +SKIP
        array([ 7.9, -11.2], dtype=float32)
    """

    def __init__(self, model: str | Path, *, device: str | None = None, route: str = "auto",
                 token_budget: int | None = None, batch_size: int | None = 128, max_length: int | None = None,
                 calibration: Calibration | None = None, threads: int | None = None,
                 cache_dir: str | Path | None = None,
                 calibration_pairs: Sequence[tuple[str, str]] | None = None) -> None:
        if device not in (None, "auto", "cpu"):
            raise InvalidInputError(f"FastEncoderReranker runs on CPU only, got device={device!r}; "
                                    "use CrossEncoderReranker (or load_reranker) on GPUs.")
        chosen = route == "auto"
        route = default_route() if chosen else route
        if route not in ROUTES:
            raise InvalidInputError(f"route={route!r} is unknown; use one of auto, {', '.join(ROUTES)}.")
        if token_budget is not None and token_budget < 16:
            raise InvalidInputError(f"token_budget must be >= 16, got {token_budget}.")
        self.name = str(model)
        self.route = route
        self.token_budget = int(token_budget or DEFAULT_TOKEN_BUDGET[route.split("-")[0]])
        self.calibration_pairs = check_pairs(calibration_pairs) if calibration_pairs else None
        self.max_rows = int(batch_size or 128)
        if self.max_rows < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}.")
        self.threads = threads
        self.calibration = calibration or Calibration(temperature=1.0)
        try:
            self.path = resolve_model(self.name)
        except RankfunnelError as exc:
            raise unavailable(self.name, exc) from exc
        self.licence = warn_if_non_commercial(self.name, self.path)
        self._onnx: OnnxEncoder | None = None
        self._openvino: OpenVinoEncoder | None = None
        self._torch: Any = None
        try:
            try:
                self._load(max_length, cache_dir)
            except Exception as exc:
                if not (chosen and self.route.startswith("openvino")):
                    raise
                # The automatic choice must not make a model unusable that eager torch can run (an architecture
                # OpenVINO cannot convert, a missing nncf for an int8 default): fall back, loudly.
                fallback = "torch-bf16" if self.route == "openvino-bf16" else "torch-fp32"
                log.warning("OpenVINO route %s failed for %s (%s: %s); using %s instead.", self.route,
                            self.name, type(exc).__name__, exc, fallback)
                self.route = fallback
                self.token_budget = int(token_budget or DEFAULT_TOKEN_BUDGET["torch"])
                self._openvino = None
                self._load(max_length, cache_dir)
        except RankfunnelError:
            raise
        except Exception as exc:  # noqa: BLE001 - loader failures become one plain error
            raise unavailable(self.name, exc) from exc

    def _load(self, max_length: int | None, cache_dir: str | Path | None) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        config = AutoConfig.from_pretrained(self.path)
        limit = min(int(getattr(self.tokenizer, "model_max_length", 512) or 512),
                    int(getattr(config, "max_position_embeddings", 512) or 512))
        self.max_length = min(limit, max_length) if max_length else limit
        self._input_names = [n for n in MODEL_INPUTS if n in self.tokenizer.model_input_names]
        if self.threads:
            torch.set_num_threads(self.threads)
        threads = self.threads or torch.get_num_threads()

        def load_fp32() -> Any:  # the converted routes need the torch weights only to fill their cache
            return AutoModelForSequenceClassification.from_pretrained(self.path, dtype=torch.float32).eval()

        if self.route.startswith("openvino"):
            # int8 runs its non-quantised ops in bf16 only where the CPU has it natively
            precision = {"openvino-fp32": "f32", "openvino-bf16": "bf16"}.get(
                self.route, "bf16" if cpu_has_native_bf16() else "f32")
            self._openvino = OpenVinoEncoder.build(
                load_fp32, self.tokenizer, self._input_names, self.path, int8=self.route == "openvino-int8",
                precision=precision, calibration=self.calibration_pairs, max_length=self.max_length,
                cache_dir=cache_dir, threads=threads)
        elif self.route.startswith("onnx"):
            self._onnx = OnnxEncoder.build(load_fp32, self._input_names, self.path,
                                           quantise=self.route == "onnx-int8", cache_dir=cache_dir,
                                           threads=threads)
        else:
            model = load_fp32()
            if self.route == "torch-int8":
                with warnings.catch_warnings():  # torch.ao's deprecation notice; torchao has no CPU drop-in yet
                    warnings.simplefilter("ignore")
                    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            elif self.route == "torch-bf16":
                model = model.to(torch.bfloat16)
            self._torch = model

    def _forward(self, features: dict[str, np.ndarray]) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.run(features)
        import torch

        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v) for k, v in features.items()}
            logits = self._torch(**inputs).logits
        return logits.float().numpy()

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw scores (float32 logits) for (query, document) pairs, in input order.

        Raises:
            InvalidInputError: A pair is not two strings.
            RerankerUnavailableError: The model failed while scoring.
        """
        checked = check_pairs(pairs, self.max_length)
        if not checked:
            return np.zeros(0, dtype=np.float32)
        enc = self.tokenizer([q for q, _ in checked], [d for _, d in checked], truncation="longest_first",
                             max_length=self.max_length, padding=False)
        ids: list[list[int]] = enc["input_ids"]
        lengths = [len(x) for x in ids]
        out = np.empty(len(checked), dtype=np.float32)

        def padded_batches() -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
            for members in token_budget_batches(lengths, self.token_budget, max_rows=self.max_rows):
                batch = np.asarray(members, dtype=np.intp)
                rows: list[dict[str, Any]] = [{k: enc[k][i] for k in self._input_names} for i in batch]
                padded = self.tokenizer.pad(rows, padding=True, return_tensors="np")  # type: ignore[arg-type]
                yield batch, {k: np.asarray(padded[k], dtype=np.int64) for k in self._input_names}

        def keep(batch: np.ndarray, logits: np.ndarray) -> None:
            out[batch] = logits[:, -1] if logits.ndim == 2 else logits.reshape(-1)

        try:
            if self._openvino is not None:
                self._openvino.run_batches(padded_batches(), keep)
            else:
                for batch, features in padded_batches():
                    keep(batch, self._forward(features))
        except Exception as exc:  # noqa: BLE001
            raise RerankerUnavailableError(
                f"Reranker {self.name!r} ({self.route}) failed while scoring {len(checked)} pairs "
                f"({type(exc).__name__}: {exc}). Fix: lower token_budget, or pass fast=False for the "
                "reference path."
            ) from exc
        return out
