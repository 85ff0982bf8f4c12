"""Export a sequence-classification encoder to ONNX once, quantise it, and cache the files.

The cache lives beside the model (``<model>/.rankfunnel-onnx/``) when that folder is writable and not in the
Hugging Face hub cache, else under ``cache_dir`` or ``~/.cache/rankfunnel/onnx``. Each entry is keyed by the
model's weight files (size and modification time) and the torch / onnxruntime versions, and written atomically
(temporary name, then rename), so concurrent processes never read a half-written file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel._optional import require

log = logging.getLogger(__name__)

#: Model inputs a cross-encoder may take, in the order the exported graphs use.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def weights_fingerprint(model_path: str, extra: str) -> str:
    """A short key over the model folder's weight and config files (name, size, mtime) plus ``extra``."""
    h = hashlib.sha256()
    folder = Path(model_path)
    for f in sorted(folder.glob("*")):
        if f.is_file() and f.suffix in {".safetensors", ".bin", ".json"}:
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def _fingerprint(model_path: str, quantise: bool) -> str:
    import torch

    ort = require("onnxruntime", "onnx")
    return weights_fingerprint(model_path, f"{torch.__version__}|{ort.__version__}|int8={quantise}")


def _in_hub_cache(path: Path) -> bool:
    try:
        from huggingface_hub import constants

        return path.resolve().is_relative_to(Path(constants.HF_HUB_CACHE).resolve())
    except Exception:  # noqa: BLE001 - no huggingface_hub (or an odd path): treat as a user folder
        return False


def cache_folder(model_path: str, cache_dir: str | Path | None, kind: str = "onnx") -> Path:
    """``<model>/.rankfunnel-<kind>`` when writable (and no ``cache_dir``), else ``cache_dir`` or the user cache.

    A model inside the Hugging Face hub cache is never written to (its snapshot folders belong to
    huggingface_hub); its converted files go to the user cache.
    """
    beside = Path(model_path) / f".rankfunnel-{kind}"
    if cache_dir is None and Path(model_path).is_dir() and not _in_hub_cache(Path(model_path)):
        try:
            beside.mkdir(exist_ok=True)
            probe = beside / ".write-probe"
            probe.touch()
            probe.unlink()
            return beside
        except OSError:
            pass
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    root = Path(cache_dir) if cache_dir else home / "rankfunnel" / kind
    root.mkdir(parents=True, exist_ok=True)
    return root


def _export(model: Any, names: list[str], dest: Path) -> None:
    import torch

    class _Logits(torch.nn.Module):  # return a plain tensor so the exporter sees one output
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(names, args, strict=True))).logits

    dummy = tuple(torch.ones((2, 16), dtype=torch.long) if n != "token_type_ids"
                  else torch.zeros((2, 16), dtype=torch.long) for n in names)
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Logits(model).eval(), dummy, str(dest), input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=17, dynamo=False, do_constant_folding=True)


class OnnxEncoder:
    """An onnxruntime session over an exported (optionally int8) cross-encoder."""

    def __init__(self, onnx_path: Path, threads: int) -> None:
        ort = require("onnxruntime", "onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared CPUs: do not spin
        self.path = onnx_path
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    @classmethod
    def build(cls, load_model: Callable[[], Any], names: list[str], model_path: str, *, quantise: bool,
              cache_dir: str | Path | None, threads: int) -> OnnxEncoder:
        """Load the cached ONNX file for ``model_path`` or export (and quantise) it once.

        ``load_model`` returns the fp32 torch module; it is only called when the cache has no entry.
        """
        require("onnx", "onnx")
        folder = cache_folder(model_path, cache_dir)
        key = _fingerprint(model_path, quantise)
        final = folder / f"model-{key}{'-int8' if quantise else ''}.onnx"
        if not final.is_file():
            log.info("Exporting %s to ONNX (once) at %s", model_path, final)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                fp32 = Path(tmp) / "model.onnx"
                _export(load_model(), names, fp32)
                out = fp32
                if quantise:
                    from onnxruntime.quantization import QuantType, quantize_dynamic

                    out = Path(tmp) / "model-int8.onnx"
                    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
                os.replace(out, final)
        return cls(final, threads)

    def run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for one padded batch (int64 arrays keyed by input name)."""
        feeds = {n: features[n] for n in self.input_names}
        return np.asarray(self.session.run(["logits"], feeds)[0], dtype=np.float32)
