"""Multi-process / multi-GPU document encoding for large ingestion runs.

:class:`PooledEmbedder` wraps a :class:`~rankfunnel.embed.SentenceTransformerEmbedder` and encodes large
batches with sentence-transformers' multi-process pool (one worker process per device: ``cuda:0``,
``cuda:1``, ... or several ``cpu`` workers). It keeps the wrapped embedder's ``name`` and ``dim``, so an index
built with it is the same index (same manifest, same vectors to float tolerance) as one built without it,
and queries can be encoded later in-process by the plain embedder.

Wiring (ingestion): ``with PooledEmbedder(SentenceTransformerEmbedder(name), devices=["cuda:0", "cuda:1"])
as emb: collection.add(stream, ...)`` with the collection opened on ``emb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError


class PooledEmbedder:
    """An :class:`~rankfunnel.protocols.Embedder` that spreads large ``encode`` calls over worker processes.

    Args:
        embedder: a ``SentenceTransformerEmbedder`` (its model is copied to every worker).
        devices: one entry per worker process, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu"] * 4``.
            Default: every visible CUDA device, else 4 CPU workers (sentence-transformers' choice).
        min_texts: calls with fewer texts run in-process (starting workers costs seconds, not worth it).
        chunk_size: texts sent to a worker at a time (default: sentence-transformers' choice).

    Examples:
        >>> from rankfunnel.embed import SentenceTransformerEmbedder  # doctest: +SKIP
        >>> pooled = PooledEmbedder(SentenceTransformerEmbedder(), devices=["cpu", "cpu"])  # doctest: +SKIP
        >>> with pooled as emb:  # doctest: +SKIP
        ...     vectors = emb.encode(texts)
    """

    def __init__(self, embedder: Any, *, devices: Sequence[str] | None = None, min_texts: int = 2048,
                 chunk_size: int | None = None) -> None:
        model = getattr(embedder, "_model", None)
        if model is None or not hasattr(model, "start_multi_process_pool"):
            raise InvalidInputError("PooledEmbedder needs a SentenceTransformerEmbedder "
                                    f"(a sentence-transformers model); got {type(embedder).__name__}.")
        if devices is not None and len(devices) == 0:
            raise InvalidInputError("devices is empty: give at least one, e.g. ['cuda:0'] or ['cpu', 'cpu'].")
        self.inner = embedder
        self.name: str = embedder.name
        self.dim: int = embedder.dim
        self.devices = list(devices) if devices is not None else None
        self.min_texts = min_texts
        self.chunk_size = chunk_size
        self._pool: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"PooledEmbedder({self.inner!r}, devices={self.devices!r})"

    def start(self) -> None:
        """Start the worker processes (done lazily by the first large :meth:`encode`)."""
        if self._pool is None:
            self._pool = self.inner._model.start_multi_process_pool(target_devices=self.devices)

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            self.inner._model.stop_multi_process_pool(pool)

    def __enter__(self) -> PooledEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
               ) -> np.ndarray:
        """Unit-norm float32 vectors, from the pool for ``min_texts`` texts or more, else in-process."""
        if len(texts) < self.min_texts:
            return np.asarray(self.inner.encode(texts, batch_size=batch_size, show_progress=show_progress))
        from rankfunnel import embed

        # The same input preparation as the wrapped embedder, so both paths give the same vectors.
        cap = self.inner.max_seq_length * embed.CHARS_PER_TOKEN_CAP
        items = [t[:cap] for t in embed._check_texts(texts)]
        self.start()
        vectors = self.inner._model.encode(items, pool=self._pool, batch_size=batch_size,
                                           chunk_size=self.chunk_size, show_progress_bar=show_progress,
                                           convert_to_numpy=True, normalize_embeddings=True)
        v = np.asarray(vectors, dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
