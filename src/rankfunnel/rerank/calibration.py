"""Score calibration: the :class:`Calibration` type and where fitted values are stored and found.

``rankfunnel calibrate`` (fitting lives in :mod:`rankfunnel.eval.calibrate`) writes ``calibration.json`` into
an index directory and, for a local model folder, beside the model. Entries are keyed by the model's
*identity* (:func:`model_identity`), not by how its name was spelled: a hub id as it is, a local folder as
its resolved path plus a content fingerprint. So a fit stored while the model was named ``models/x`` is found
when the same folder is loaded as ``/abs/path/models/x``, and a retrained folder does not inherit the fit
of the weights it replaced.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import IndexCorruptError, InvalidInputError

CALIBRATION_FILE = "calibration.json"
_EDGE_BYTES = 1 << 20  # bytes read from each end of a large file for the fingerprint


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Maps raw scores to 0-1 with ``sigmoid((raw - bias) / temperature)``.

    zerank models use ``temperature=5`` (their card's ``sigmoid(logit / 5)``); BERT cross-encoders trained
    with BCE use ``temperature=1``. ``rankfunnel calibrate`` fits both values on labelled pairs.

    Examples:
        >>> Calibration(temperature=2.0)(np.array([0.0])).tolist()
        [0.5]
    """

    temperature: float = 1.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise InvalidInputError(f"temperature must be a positive finite number, got {self.temperature}.")
        if not math.isfinite(self.bias):
            raise InvalidInputError(f"bias must be finite, got {self.bias}.")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        z = (np.asarray(raw, dtype=np.float64) - self.bias) / self.temperature
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, float]:
        return {"temperature": self.temperature, "bias": self.bias}


def folder_fingerprint(folder: str | Path) -> str:
    """A short content hash of a model folder (file names, sizes, small files, the edges of large ones).

    Every file's relative name and size go in, with small files' bytes and the first and last MiB of large ones.

    Hand-written because no kept library hashes a model folder; reading whole multi-GB weight files on every
    load would be too slow, and the edges plus the size change whenever weights are retrained.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == CALIBRATION_FILE or rel.startswith(".") or "/." in rel:
            continue  # the store itself and hidden temporaries must not change the identity
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with path.open("rb") as fh:
            if size <= 2 * _EDGE_BYTES:
                digest.update(fh.read())
            else:
                digest.update(fh.read(_EDGE_BYTES))
                fh.seek(-_EDGE_BYTES, os.SEEK_END)
                digest.update(fh.read(_EDGE_BYTES))
    return digest.hexdigest()[:16]


def model_identity(name: str, path: str | Path | None = None) -> str:
    """The key a calibration is stored under for the model ``name`` (as given to ``load_reranker``).

    A local folder (``name`` or the already resolved ``path``) becomes ``"<resolved path>#<fingerprint>"``;
    anything else (a hub id, ``fake``, ``remote:URL``, a cascade spec) is its name.

    Examples:
        >>> model_identity("cross-encoder/ms-marco-MiniLM-L6-v2")
        'cross-encoder/ms-marco-MiniLM-L6-v2'
    """
    candidate = Path(str(name)).expanduser()
    folder = candidate if candidate.is_dir() else None
    if folder is None and path is not None and Path(path).is_dir() and _names_folder(str(name)):
        folder = Path(path)
    if folder is None:
        return str(name)
    resolved = folder.resolve()
    return f"{resolved}#{folder_fingerprint(resolved)}"


def _names_folder(name: str) -> bool:
    """Whether ``name`` was spelled as a path (not a hub id that resolved to a cached snapshot)."""
    return name.startswith((".", "/", "~")) or name.count("/") != 1


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(
            f"{path} cannot be read ({exc}); delete it and run `rankfunnel calibrate` again."
        ) from exc
    if not isinstance(data, dict):
        raise IndexCorruptError(
            f"{path} does not hold a JSON object; delete it and run `rankfunnel calibrate` again."
        )
    return data


def save_calibration(
    folder: str | Path,
    identity: str,
    calibration: Calibration,
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write (atomically) ``calibration`` for the model ``identity`` into ``folder/calibration.json``.

    ``identity`` comes from :func:`model_identity`; other models' entries are kept.

    Examples:
        >>> save_calibration("/tmp/idx", "my-org/reranker", Calibration(temperature=2.0))  # doctest: +SKIP
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(
            f"{folder} is not a directory: pass an index directory or a local model folder."
        )
    path = folder / CALIBRATION_FILE
    data = _read(path) if path.exists() else {}
    data[identity] = {**calibration.to_dict(), **dict(extra or {})}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".calibration.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_calibration(folder: str | Path, identity: str) -> Calibration | None:
    """The calibration stored for the model ``identity`` in ``folder/calibration.json``, or None.

    Examples:
        >>> load_calibration("/tmp/no-such-index", "fake") is None
        True
    """
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    entry = _read(path).get(identity)
    if not isinstance(entry, dict) or "temperature" not in entry:
        return None
    try:
        return Calibration(temperature=float(entry["temperature"]), bias=float(entry.get("bias", 0.0)))
    except (TypeError, ValueError, InvalidInputError) as exc:
        raise IndexCorruptError(
            f"{path}: the entry for {identity!r} is invalid ({exc}); run `rankfunnel calibrate` again."
        ) from exc
