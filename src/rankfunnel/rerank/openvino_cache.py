"""Convert a sequence-classification encoder to OpenVINO once, optionally quantise it to int8, and cache it.

OpenVINO is driven directly (``openvino.convert_model`` on the torch module, ``nncf.quantize`` for int8)
rather than through sentence-transformers' ``backend="openvino"``, whose extra drags in optimum, torchvision
and an older transformers. Measured on the benchmark model (``bench/rerank_encoder.py``, see
``docs/benchmarks.md``), OpenVINO's CPU plugin runs the same graph about 1.9x faster than eager torch in bf16.

int8 is *static* post-training quantisation (NNCF, ``ModelType.TRANSFORMER``: SmoothQuant plus per-channel
weights, activations calibrated on real text pairs). Dynamic int8 (torch ``quantize_dynamic`` or onnxruntime)
lost 0.005-0.030 NDCG@10 with a trained reranker; the calibrated static model is checked by
``bench/route_quality.py``. Calibration uses the caller's pairs when given, else 112 pairs built from the
packaged sample corpus (:func:`sample_calibration_pairs`).

Cache: ``<model>/.rankfunnel-openvino/ov-<key>[-int8]/model.{xml,bin}`` beside the model when that folder is
writable and not in the Hugging Face hub cache, else under ``cache_dir`` or ``~/.cache/rankfunnel/openvino``.
The key covers the weight files (size, mtime), the openvino / nncf / torch versions and the calibration set;
an entry is written to a temporary folder and renamed into place, so a concurrent or interrupted export never
leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel._optional import require
from rankfunnel.rerank.onnx_cache import cache_folder, weights_fingerprint

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8


def sample_calibration_pairs(n: int = 112, docs_per_pair: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """Generic int8 calibration pairs from the packaged sample corpus: real English, passage-length documents.

    Each of the 7 sample queries is paired with documents made of ``docs_per_pair`` sample documents joined
    (180-230 tokens with a BERT tokenizer, like the passages rerankers read; single sample documents are
    only ~50). Chosen among four calibration sets by NDCG@10 on SciFact and NFCorpus (docs/benchmarks.md):
    joined documents came within 0.003 of fp32 on both, single short documents lost 0.005 on NFCorpus.
    """
    import random

    from rankfunnel.ingest import iter_documents, sample_data

    docs = sorted({d.content for d in iter_documents(sample_data())})
    queries = sorted({json.loads(line)["text"] for line in
                      sample_data("sample_queries.jsonl").read_text("utf-8").splitlines() if line})
    rng = random.Random(seed)
    return [(queries[i % len(queries)], "\n".join(rng.sample(docs, docs_per_pair))) for i in range(n)]


def _calibration_batches(pairs: Sequence[tuple[str, str]], tokenizer: Any, names: list[str],
                         max_length: int) -> list[dict[str, np.ndarray]]:
    out = []
    for i in range(0, len(pairs), CALIBRATION_BATCH):
        chunk = pairs[i:i + CALIBRATION_BATCH]
        enc = tokenizer([q for q, _ in chunk], [d for _, d in chunk], truncation="longest_first",
                        max_length=max_length, padding=True, return_tensors="np")
        out.append({n: np.asarray(enc[n], dtype=np.int64) for n in names})
    return out


def _fingerprint(model_path: str, int8: bool, calibration: Sequence[tuple[str, str]]) -> str:
    import torch

    ov = require("openvino", "openvino")
    extra = f"openvino={ov.__version__}|torch={torch.__version__}|int8={int8}"
    if int8:
        nncf = require("nncf", "openvino")
        calib = hashlib.sha256(json.dumps(list(calibration)).encode()).hexdigest()[:16]
        extra += f"|nncf={nncf.__version__}|calib={calib}"
    return weights_fingerprint(model_path, extra)


def _convert(load_model: Callable[[], Any], tokenizer: Any, names: list[str], int8: bool,
             calibration: Sequence[tuple[str, str]], max_length: int) -> Any:
    ov = require("openvino", "openvino")
    example = _calibration_batches(list(calibration)[:2] or [("query", "document")], tokenizer, names, max_length)
    with warnings.catch_warnings():  # tracing warnings from transformers' mask helpers
        warnings.simplefilter("ignore")
        ov_model = ov.convert_model(load_model(), example_input=example[0])
    if not int8:
        return ov_model
    nncf = require("nncf", "openvino")
    batches = _calibration_batches(calibration, tokenizer, names, max_length)
    return nncf.quantize(ov_model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(batches))


class OpenVinoEncoder:
    """A compiled OpenVINO model scoring padded batches through a small async request queue."""

    def __init__(self, xml_path: Path, *, precision: str, threads: int) -> None:
        ov = require("openvino", "openvino")
        self.path = xml_path
        self.precision = precision
        core = ov.Core()
        # LATENCY: one stream using every thread. The THROUGHPUT hint (a stream per core, batches in parallel)
        # was 10% faster on 100-pair requests but 35% slower on 20-pair ones (docs/benchmarks.md).
        self.compiled = core.compile_model(str(xml_path), "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": max(1, int(threads)),
            "PERFORMANCE_HINT": "LATENCY"})
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self._queue = ov.AsyncInferQueue(self.compiled, 2)  # two requests: pad the next batch while one runs
        self._lock = threading.Lock()  # one predict at a time drives the queue; callers may be threads

    @classmethod
    def build(cls, load_model: Callable[[], Any], tokenizer: Any, names: list[str], model_path: str, *,
              int8: bool, precision: str, calibration: Sequence[tuple[str, str]] | None, max_length: int,
              cache_dir: str | Path | None, threads: int) -> OpenVinoEncoder:
        """Load the cached OpenVINO model for ``model_path`` or convert (and quantise) it once.

        ``load_model`` returns the fp32 torch module; it is only called when the cache has no entry.
        """
        ov = require("openvino", "openvino")
        calib = list(calibration) if calibration else sample_calibration_pairs()
        folder = cache_folder(model_path, cache_dir, "openvino")
        final = folder / f"ov-{_fingerprint(model_path, int8, calib if int8 else [])}{'-int8' if int8 else ''}"
        if not (final / "model.xml").is_file():
            log.info("Converting %s to OpenVINO%s (once) at %s", model_path, " int8" if int8 else "", final)
            tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like the model folder
            try:
                ov_model = _convert(load_model, tokenizer, names, int8, calib, max_length)
                ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
                try:
                    os.replace(tmp, final)
                except OSError:  # another process renamed its copy first: use that one
                    if not (final / "model.xml").is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return cls(final / "model.xml", precision=precision, threads=threads)

    def run_batches(self, batches: Iterator[tuple[np.ndarray, dict[str, np.ndarray]]],
                    sink: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Score ``(indices, features)`` batches concurrently; ``sink(indices, logits)`` gets each result."""
        errors: list[BaseException] = []

        def done(request: Any, idx: np.ndarray) -> None:
            try:
                sink(idx, np.array(request.get_output_tensor(0).data, dtype=np.float32))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                errors.append(exc)

        with self._lock:
            self._queue.set_callback(done)
            try:
                for idx, features in batches:
                    self._queue.start_async({n: features[n] for n in self.input_names}, idx)
            finally:
                self._queue.wait_all()  # never leave requests in flight, even when a batch failed to build
        if errors:
            raise errors[0]
