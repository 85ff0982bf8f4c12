"""A deterministic reranker without a model, for tests, demos and the service's own tests."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence

import numpy as np

from rankfunnel.rerank.base import BaseReranker, Calibration

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _tokens(text: str) -> set[str]:
    return {t.lower() for t in _TOKEN.findall(text)}


class FakeReranker(BaseReranker):
    """Scores a pair by token overlap: ``|query tokens in doc| / |query tokens|`` (0 to 1), then ``* scale``.

    Deterministic and instant, so the pipeline, service and cascade logic can be tested without a model.
    ``delay_s`` adds latency to every ``predict`` call and ``fail_with`` makes every call raise, to test
    timeouts and fail-open behaviour; ``fail_on`` makes only calls that contain a given text raise (a poisoned
    input, to test that one bad request cannot fail others batched with it). ``calls`` and ``pairs_scored``
    count the work done.

    Args:
        delay_s: Seconds slept in every ``predict`` call (``0`` for none).
        fail_with: An exception (instance or class) raised by every ``predict`` call; ``None`` for none.
        scale: Multiplies the overlap fraction, so raw scores look like logits in ``[0, scale]``.
        calibration: Normalisation of raw scores; default ``sigmoid(raw - scale / 2)``.
        name: Name reported in results.
        fail_on: A substring; a ``predict`` call whose query or documents contain it raises ``ValueError``.

    Examples:
        >>> r = FakeReranker()
        >>> [round(float(s), 2) for s in r.score("red car", ["a red car", "a blue boat", "red"])]
        [10.0, 0.0, 5.0]
    """

    def __init__(self, *, delay_s: float = 0.0, fail_with: BaseException | type[BaseException] | None = None,
                 scale: float = 10.0, calibration: Calibration | None = None, name: str = "fake",
                 fail_on: str | None = None) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}.")
        self.delay_s = float(delay_s)
        self.fail_with = fail_with
        self.scale = float(scale)
        self.calibration = calibration or Calibration(temperature=1.0, bias=self.scale / 2)
        self.name = name
        self.fail_on = fail_on
        self._lock = threading.Lock()
        self.calls = 0
        self.pairs_scored = 0

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw overlap scores (float32) for (query, document) pairs, after the configured delay or failure."""
        with self._lock:
            self.calls += 1
            self.pairs_scored += len(pairs)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_with is not None:
            raise self.fail_with
        if self.fail_on is not None and any(self.fail_on in q or self.fail_on in d for q, d in pairs):
            raise ValueError(f"poisoned input: a pair contains {self.fail_on!r}")
        out = np.empty(len(pairs), dtype=np.float32)
        for i, (query, doc) in enumerate(pairs):
            q = _tokens(query)
            out[i] = self.scale * (len(q & _tokens(doc)) / len(q)) if q else 0.0
        return out
