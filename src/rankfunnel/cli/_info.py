"""What ``rankfunnel info`` reports: devices, versions, resolved models and licence warnings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rankfunnel.errors import RankfunnelError


def _version(*dists: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "not installed"


def collect_info() -> dict[str, Any]:
    """What ``rankfunnel info`` reports, as a JSON-serialisable dict (no model is loaded)."""
    import platform

    import torch

    from rankfunnel import models
    from rankfunnel.pipeline import resolve_reranker_spec

    cuda = torch.cuda.is_available()
    devices: dict[str, Any] = {
        "chosen": models.choose_device(os.environ.get("RANKFUNNEL_DEVICE")),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    versions = {
        "python": platform.python_version(),
        "rankfunnel": _version("rankfunnel"),
        "torch": torch.__version__,
        "sentence-transformers": _version("sentence-transformers"),
        "transformers": _version("transformers"),
        "faiss": _version("faiss-cpu", "faiss-gpu", "faiss"),
        "bm25s": _version("bm25s"),
        "numpy": _version("numpy"),
        "pymilvus": _version("pymilvus"),
        "onnxruntime": _version("onnxruntime"),
        "fastapi": _version("fastapi"),
    }
    roles = {
        "embedder": models.DEFAULT_EMBEDDER,
        "reranker_auto": resolve_reranker_spec("auto", devices["chosen"]) or "none",
        "reranker_cpu_default": models.DEFAULT_CPU_RERANKER,
        "reranker_gpu_default": models.DEFAULT_GPU_RERANKER,
    }
    found: dict[str, dict[str, Any]] = {}
    warnings_: list[str] = []
    for role, name in roles.items():
        entry: dict[str, Any] = {"name": name}
        try:
            path = models.resolve_model(name)
            local = Path(path).is_dir()
            entry["path"] = path if local else f"hub:{path} (downloaded on first use)"
            lic = models.read_licence(path)
            entry["licence"] = lic.licence
            if lic.non_commercial:
                warnings_.append(
                    f"{name}: licence {lic.licence!r} forbids commercial use; check it before "
                    "deploying, or train your own reranker with `rankfunnel train`."
                )
            elif lic.licence is None and role.startswith("reranker"):
                warnings_.append(
                    f"{name}: licence unknown until its model card is on disk; check the card "
                    "before commercial use."
                )
        except RankfunnelError as exc:
            entry["error"] = str(exc)
        found[role] = entry
    return {
        "devices": devices,
        "versions": versions,
        "models": found,
        "warnings": warnings_,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("RANKFUNNEL_", "HF_HUB_OFFLINE"))},
    }
