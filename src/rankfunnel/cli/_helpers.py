"""Helpers of the core commands: what ``info`` reports and the ``rerank --docs`` reader."""

from __future__ import annotations

import os
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


def collect_info(reranker: str = "auto", device: str | None = None, offline: bool = False) -> dict[str, Any]:
    """What ``rankfunnel info`` reports, as a JSON-serialisable dict (no model is loaded).

    ``reranker``/``device``/``offline`` are the command's flags (with their environment variables): the
    report shows what they resolve to, with the resolver's reason and the model's licence.
    """
    import platform

    import torch

    from rankfunnel import models
    from rankfunnel.cli._reranker import resolve

    cuda = torch.cuda.is_available()
    devices: dict[str, Any] = {
        "chosen": models.choose_device(device),
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
    resolution, off = resolve(reranker, device=devices["chosen"], offline=offline)
    roles = {
        "embedder": models.DEFAULT_EMBEDDER,
        "reranker": resolution.spec or "none",
        "reranker_cpu_default": models.DEFAULT_CPU_RERANKER,
        "reranker_gpu_default": models.DEFAULT_GPU_RERANKER,
    }
    found: dict[str, dict[str, Any]] = {}
    warnings_: list[str] = []
    for role, name in roles.items():
        entry: dict[str, Any] = {"name": name}
        if name == "none" or name == "fake" or name.startswith("remote:") or "," in name:
            found[role] = entry  # nothing on disk to resolve (stage 1 only, the fake, a remote API, a cascade)
            continue
        try:
            path = models.resolve_model(name, offline=off)
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
        "reranker": {
            "requested": resolution.requested,
            "resolved": resolution.spec,
            "reason": resolution.reason,
            "licence": found["reranker"].get("licence"),
            "offline": off,
        },
        "models": found,
        "warnings": warnings_,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("RANKFUNNEL_", "HF_HUB_OFFLINE"))},
    }


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
