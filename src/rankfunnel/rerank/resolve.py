"""The one reranker resolver: what ``reranker="auto"`` (or a name) means, with explicit inputs only.

Every entry point (``Pipeline.from_dir``, ``load_reranker``, the CLI, the service, ``make demo``) asks
:func:`resolve_reranker`. Its inputs are explicit: the device, whether the model hub may be used, an
optional locally trained model folder and the domain of the search. It never looks at the current working
directory and never picks a model whose scoring head is untrained.

``auto`` means, in order:

1. the trained folder passed in, when the search declares the domain its model card declares and its
   held-out record does not show it losing to stage 1 (:func:`trained_reranker_verdict`);
2. zerank-2 on a CUDA GPU, ms-marco-MiniLM-L6-v2 on a CPU (and MPS), when it can be loaded: always when the
   hub may be used (it is then downloaded), offline only when it is on disk (hub cache or offline package);
   on a GPU without zerank-2 on disk, the MiniLM model when that one is;
3. otherwise nothing: stage 1 only, with a reason that says how to get a reranker.
"""

from __future__ import annotations

import json
import logging
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from rankfunnel.models import (
    DEFAULT_CPU_RERANKER,
    DEFAULT_GPU_RERANKER,
    cached_snapshot,
    choose_device,
    hub_offline_configured,
    offline_package_folder,
    read_model_card,
)

if TYPE_CHECKING:
    from rankfunnel.rerank.base import BaseReranker

log = logging.getLogger(__name__)

#: Where ``make reranker`` writes the reranker fine-tuned on SciFact (relative to the repository root). The
#: resolver never looks there by itself: pass it as ``trained=`` (with the search's ``domain``) to use it.
TRAINED_RERANKER_DIR = Path("models/scifact-minilm-reranker")

OFF_SPECS = frozenset({"", "none", "off"})
HOW_TO_GET_ONE = (
    "To rerank, connect to the model hub once (the model is then cached), train one with `make reranker` or "
    "`rankfunnel train`, or pass --reranker PATH (reranker=PATH) with a trained model folder."
)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a reranker spec resolved to.

    Attributes:
        spec: the concrete spec to load (a hub id, folder, ``fake``, ``remote:URL``, a cascade), or None for
            stage 1 only.
        reason: one sentence saying why this reranker (or why none).
        requested: the spec as given (``auto``, a name, ``none``).
    """

    spec: str | None
    reason: str
    requested: str


def resolve_reranker(
    spec: str | None,
    *,
    device: str | None = None,
    offline: bool | None = None,
    trained: str | Path | None = None,
    domain: str | None = None,
) -> Resolution:
    """Resolve a reranker spec; ``auto`` (or None) follows the order in this module's docstring.

    Args:
        spec: ``auto``/None, ``none``/``off``, or any :func:`rankfunnel.rerank.load_reranker` spec (kept as is).
        device: ``cuda``, ``mps``, ``cpu`` or None/``auto`` (the device that would be chosen).
        offline: True when the model hub must not be used; None: huggingface_hub's own setting
            (``HF_HUB_OFFLINE``).
        trained: a locally trained model folder that ``auto`` may use for its declared domain.
        domain: the domain of the searches (e.g. a dataset name); ``auto`` uses ``trained`` only when its card
            declares the same domain.

    Examples:
        >>> resolve_reranker("none").spec is None
        True
        >>> resolve_reranker("fake").spec
        'fake'
        >>> resolve_reranker("auto", device="cpu", offline=False).spec
        'cross-encoder/ms-marco-MiniLM-L6-v2'
    """
    requested = "auto" if spec is None else str(spec).strip()
    if requested.lower() in OFF_SPECS:
        return Resolution(None, f"reranking switched off (reranker={requested or 'none'})", requested)
    if requested.lower() != "auto":
        return Resolution(requested, f"reranker {requested!r} as named", requested)
    off = hub_offline_configured() if offline is None else offline
    notes: list[str] = []
    if trained is not None:
        usable, why = trained_reranker_verdict(trained, domain=domain)
        if usable:
            return Resolution(str(trained), f"reranker='auto' uses {trained}, trained for this domain "
                                            f"({domain!r}, declared by its model card)", requested)
        if why:
            notes.append(why)
    dev = choose_device(device)
    wanted = [DEFAULT_GPU_RERANKER, DEFAULT_CPU_RERANKER] if dev.startswith("cuda") else [DEFAULT_CPU_RERANKER]
    for name in wanted:
        if not off or model_on_disk(name):
            kind = "GPU" if name == DEFAULT_GPU_RERANKER else "CPU"
            where = "" if not off else ", found on disk"
            fallback = " (zerank-2 is not on disk and the hub is off)" if dev.startswith("cuda") and (
                name == DEFAULT_CPU_RERANKER) else ""
            text = f"reranker='auto' on {dev} uses the {kind} default {name}{where}{fallback}"
            return Resolution(name, "; ".join([text, *notes]), requested)
    missing = " and ".join(wanted)
    text = (f"reranker='auto' found no trained reranker it can load: {missing} is not on disk and the model "
            f"hub is off (offline), so results are stage 1 only. {HOW_TO_GET_ONE}")
    return Resolution(None, " ".join([text, *notes]), requested)


def model_on_disk(name: str) -> bool:
    """Whether a hub model can be loaded without the network (hub cache or an installed offline package)."""
    return offline_package_folder(name) is not None or cached_snapshot(name) is not None


def card_domain(folder: str | Path) -> str | None:
    """The domain a locally trained model declares, or None.

    ``rankfunnel_domain`` in its model card, else ``domain`` in ``rankfunnel_training.json`` (written by
    ``rankfunnel train``/``distil``). A model that declares none is never picked by ``auto``.
    """
    card = read_model_card(str(folder))
    if card is not None:
        value = getattr(card.data, "rankfunnel_domain", None)
        if value:
            return str(value)
    record = Path(folder) / "rankfunnel_training.json"
    try:
        facts = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = facts.get("domain") if isinstance(facts, dict) else None
    return str(value) if value else None


def trained_reranker_verdict(path: str | Path, *, domain: str | None = None) -> tuple[bool, str | None]:
    """Whether ``auto`` may use the trained reranker in ``path`` for ``domain``: (usable, reason when not).

    A folder trained by ``rankfunnel train`` declares its domain in its model card and records its held-out
    metrics in ``rankfunnel_training.json``: ``ndcg@10`` (stage 1 reranked) and ``base_ndcg@10`` (stage-1 order).
    ``auto`` uses it only when ``domain`` equals the declared one (a model trained on one domain measurably
    hurts others, docs/training.md) and it beat its own stage 1. Naming the folder (``reranker=PATH``) always
    loads it. ``(False, None)``: there is no model in ``path``.
    """
    folder = Path(path)
    if not ((folder / "config.json").is_file() or (folder / "modules.json").is_file()):
        return False, None
    declared = card_domain(folder)
    if declared is None or domain is None or declared.lower() != str(domain).lower():
        return False, (
            f"{folder} is not used by reranker='auto': it is trained for the domain {declared or 'unknown'!r} "
            f"and this search declares {domain or 'none'!r}; pass reranker={str(folder)!r} to use it anyway."
        )
    try:
        facts = json.loads((folder / "rankfunnel_training.json").read_text(encoding="utf-8"))
        metrics = facts.get("metrics", {})
        after, before = float(metrics["ndcg@10"]), float(metrics["base_ndcg@10"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return True, None  # a card declares the domain but no held-out record: trust the declaration
    if after > before:
        return True, None
    return False, (
        f"{folder} is not used by reranker='auto': on its held-out queries it scored NDCG@10 {after:.3f}, "
        f"below stage 1's own order ({before:.3f}), so it would make results worse; retrain it "
        f"(`make reranker`, see docs/training.md) or pass reranker={str(folder)!r} to use it anyway."
    )


def hub_reachable(endpoint: str = "https://huggingface.co", timeout: float = 3.0) -> bool:
    """One TCP connection to the model hub; False when it cannot be reached within ``timeout`` seconds.

    Callers turn False into ``offline=True`` so that an unreachable hub fails at once instead of after
    huggingface_hub's minute and a half of retries.
    """
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def needs_hub(spec: str | None) -> bool:
    """Whether loading ``spec`` may download from the model hub (a hub id not on disk as a folder)."""
    if not spec:
        return False
    import re

    parts = [re.sub(r":\d+$", "", p.strip()) for p in spec.split(",")]
    return any("/" in p and not p.startswith("remote:") and not Path(p).expanduser().exists() for p in parts)


def load_reranker_or_reason(
    spec: str | BaseReranker | None,
    *,
    device: str | None = None,
    offline: bool | None = None,
    trained: str | Path | None = None,
    domain: str | None = None,
    warn: bool = True,
    **load_options: Any,
) -> tuple[BaseReranker | None, str | None]:
    """Resolve and load a reranker; when there is none, return ``(None, reason)`` instead of raising.

    ``reason`` is None when a reranker loaded; otherwise it says why there is none (switched off, ``auto``
    found nothing it can load, or the loading error) and how to get one. ``load_options`` go to
    :func:`rankfunnel.rerank.load_reranker` (``route=``, ``api_key=``, ``dtype=``, ...). A loading failure
    also warns (``warn=False``: the caller shows the reason itself).

    Examples:
        >>> load_reranker_or_reason("none")
        (None, 'reranking switched off (reranker=none)')
    """
    if spec is not None and not isinstance(spec, str):
        return spec, None
    res = resolve_reranker(spec, device=device, offline=offline, trained=trained, domain=domain)
    if res.spec is None:
        return None, res.reason
    log.info("%s", res.reason)
    from rankfunnel.errors import RankfunnelError
    from rankfunnel.rerank import load_reranker

    try:
        model = load_reranker(res.spec, device=device, offline=offline, **load_options)
    except Exception as exc:  # noqa: BLE001 - keep serving stage 1 and say why, never crash
        detail = str(exc) if isinstance(exc, RankfunnelError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(f"reranker {res.spec!r} could not be loaded, so results are stage 1 only: {detail}"
                          .split())
        if warn:
            warnings.warn(reason, UserWarning, stacklevel=2)
        return None, reason
    if model is None:
        return None, "reranking switched off (reranker=none)"
    return model, None


def apply_stored_calibration(reranker: BaseReranker, *folders: str | Path | None) -> Path | None:
    """Use the fit that ``rankfunnel calibrate`` stored for this reranker, if there is one.

    Looks in each of ``folders`` (an index directory first), then in the reranker's own model folder, for a
    ``calibration.json`` entry under the model's identity
    (:func:`rankfunnel.rerank.calibration.model_identity`: however its path was spelled); the first found
    replaces ``reranker.calibration``. Returns the folder it came from, or None (the default calibration).

    Examples:
        >>> from rankfunnel.rerank.fake import FakeReranker
        >>> apply_stored_calibration(FakeReranker(), "/tmp/no-such-index") is None
        True
    """
    from rankfunnel.rerank.calibration import load_calibration, model_identity

    name = getattr(reranker, "name", None)
    if not name:
        return None
    own = getattr(reranker, "path", None)
    identity = model_identity(name, own)
    for folder in (*folders, own):
        if folder is None or not Path(folder).is_dir():
            continue
        calibration = load_calibration(folder, identity)
        if calibration is not None:
            reranker.calibration = calibration
            log.info("Using the calibration stored in %s for reranker %r: %s", folder, name, calibration)
            return Path(folder)
    return None
