"""Helpers of the core commands: what ``info`` reports, the ``rerank --docs`` reader, the hub probe."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError, RankfunnelError
from rankfunnel.jsonl import read_jsonl


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


def skip_hub_retries_if_unreachable(spec: str | None, timeout: float = 3.0) -> bool:
    """Probe the model hub once when ``spec`` names a hub model; if unreachable, switch to offline mode.

    Without this, huggingface_hub retries an unreachable hub with back-off for about a minute and a half
    before the reranker is reported unavailable. Returns True when offline mode was switched on.
    """
    if not spec or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    parts = [re.sub(r":\d+$", "", p.strip()) for p in spec.split(",")]
    if not any("/" in p and not p.startswith("remote:") and not Path(p).expanduser().exists() for p in parts):
        return False
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return False
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = "1"
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 - read at call time by huggingface_hub
        return True


def read_docs_file(path: Path) -> list[tuple[str, str]]:
    """``(id, text)`` pairs from a JSONL file (strings or objects with ``text``) or one document per line."""
    if not path.is_file():
        raise InvalidInputError(
            f"{path}: no such file. Pass --docs with a JSONL file or one document per line."
        )
    if path.name.lower().removesuffix(".gz").endswith((".jsonl", ".ndjson", ".json")):
        docs = [_doc_pair(line.value, f"{path}:{line.lineno}", n) for n, (line, _) in enumerate(read_jsonl(path))]
    else:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"{path}: not valid UTF-8 (byte {exc.start}). Re-encode the file to UTF-8 "
                f"(e.g. `iconv -f latin1 -t utf-8 {path.name}`)."
            ) from None
        docs = [(str(n), line) for n, line in enumerate(x for x in lines if x.strip())]
    if not docs:
        raise InvalidInputError(f"{path}: no documents found. Put one document per line.")
    return docs


def _doc_pair(obj: Any, where: str, n: int) -> tuple[str, str]:
    if isinstance(obj, str) and obj.strip():
        return str(n), obj
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        title = obj.get("title") or ""
        text = f"{title}\n{obj['text']}" if isinstance(title, str) and title else obj["text"]
        raw_id = obj["id"] if "id" in obj else obj.get("_id", n)
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
            raise InvalidInputError(f'{where}: the "id" must be a non-empty string or an integer, got {raw_id!r}.')
        if text.strip():
            return str(raw_id).strip(), text
    raise InvalidInputError(
        f'{where}: expected a non-empty JSON string or an object with a non-empty "text" field.'
    )
