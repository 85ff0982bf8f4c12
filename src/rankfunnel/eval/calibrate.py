"""Score calibration fitting: fit ``sigmoid((raw - b) / T)`` on labelled pairs and measure ECE.

The fit minimises the log-loss (binary cross-entropy) with scipy's L-BFGS-B over ``(log T, b)`` so that T
stays positive. Storing and finding fits (``calibration.json``, keyed by the model's identity) lives in
:mod:`rankfunnel.rerank.calibration`, which the pipeline reads without importing ``eval``.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> raw = rng.normal(0, 6, 4000)
    >>> labels = rng.random(4000) < 1 / (1 + np.exp(-(raw - 1.0) / 3.0))
    >>> fit = fit_calibration(raw, labels)
    >>> round(fit.calibration.temperature), round(fit.calibration.bias)
    (3, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rankfunnel._optional import require
from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.calibration import Calibration


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy, with probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width bins: sum over bins of ``|accuracy - confidence| * share of pairs``.

    Examples:
        >>> expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 0]))
        0.4
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape or p.size == 0:
        raise InvalidInputError("probs and labels must be non-empty arrays of the same length.")
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += abs(float(y[mask].mean()) - float(p[mask].mean())) * float(mask.mean())
    return round(ece, 12)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationFit:
    """A fitted calibration with its quality before (``before`` calibration) and after."""

    calibration: Calibration
    pairs: int
    positives: int
    log_loss_before: float
    log_loss_after: float
    ece_before: float
    ece_after: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.calibration.temperature,
            "bias": self.calibration.bias,
            "pairs": self.pairs,
            "positives": self.positives,
            "log_loss_before": self.log_loss_before,
            "log_loss_after": self.log_loss_after,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
        }


def fit_calibration(
    raw: np.ndarray, labels: np.ndarray, *, before: Calibration | None = None
) -> CalibrationFit:
    """Fit T and b of ``sigmoid((raw - b) / T)`` to binary ``labels`` by minimising log-loss.

    Args:
        raw: raw reranker scores (e.g. logits).
        labels: 1 for relevant pairs, 0 for non-relevant ones; both classes must occur.
        before: the calibration in use now (for the "before" figures); defaults to T=1, b=0.

    Returns:
        The fitted :class:`CalibrationFit`.
    """
    optimize = require("scipy.optimize", "eval", "scipy")
    special = require("scipy.special", "eval", "scipy")
    x = np.asarray(raw, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise InvalidInputError(
            f"raw ({x.size}) and labels ({y.size}) must be non-empty and of equal length."
        )
    if not np.isfinite(x).all():
        raise InvalidInputError("raw scores contain NaN or infinity; check the reranker output.")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise InvalidInputError(
            "Calibration needs both relevant and non-relevant pairs; add negatives or positives."
        )

    scale = float(np.std(x)) or 1.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_t, b = float(theta[0]), float(theta[1])
        t = math.exp(log_t)
        z = (x - b) / t
        # log-loss via logaddexp for stability; gradient of mean BCE wrt z is (sigmoid(z) - y)
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        g = special.expit(z) - y
        d_logt = float(np.mean(g * -z))
        d_b = float(np.mean(g * (-1.0 / t)))
        return loss, np.array([d_logt, d_b])

    res = optimize.minimize(
        objective,
        x0=np.array([math.log(scale), float(np.median(x))]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-12.0, 12.0), (None, None)],
    )
    cal = Calibration(temperature=float(math.exp(res.x[0])), bias=float(res.x[1]))
    prev = before or Calibration()
    p0, p1 = prev(x), cal(x)
    return CalibrationFit(
        calibration=cal,
        pairs=int(x.size),
        positives=n_pos,
        log_loss_before=log_loss(p0, y),
        log_loss_after=log_loss(p1, y),
        ece_before=expected_calibration_error(p0, y),
        ece_after=expected_calibration_error(p1, y),
    )


def collect_pairs(
    ds: Any,
    collection: Any,
    *,
    negatives_per_query: int = 10,
    top_k: int = 30,
    max_pairs: int | None = 2000,
    retriever: str = "dense",
    seed: int = 0,
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Labelled (query, document) pairs: positives from qrels, hard negatives from stage-1 candidates.

    Negatives are the highest-ranked stage-1 candidates that the qrels do not mark relevant (unjudged
    documents count as non-relevant, the usual assumption). Queries are taken in a seeded random order
    until ``max_pairs`` is reached.

    Returns:
        ``(pairs, labels)`` with labels 1 (relevant) or 0.
    """
    if negatives_per_query < 0 or top_k < 1:
        raise InvalidInputError("negatives_per_query must be >= 0 and top_k >= 1.")
    qids = sorted(ds.queries)
    np.random.default_rng(seed).shuffle(qids)
    pairs: list[tuple[str, str]] = []
    labels: list[int] = []
    batch = 32
    for i in range(0, len(qids), batch):
        chunk = qids[i : i + batch]
        hits = collection.search_many([ds.queries[q] for q in chunk], k=top_k, retriever=retriever)
        for q, hs in zip(chunk, hits, strict=True):
            rel = {d for d, g in ds.qrels[q].items() if g > 0}
            self_id = ds.self_ids.get(q)
            pos_docs = _existing(collection, sorted(rel))
            neg = [h for h in hs if h.id not in rel and h.id != self_id and h.document is not None]
            for d in pos_docs:
                pairs.append((ds.queries[q], d.content))
                labels.append(1)
            for h in neg[:negatives_per_query]:
                assert h.document is not None
                pairs.append((ds.queries[q], h.document.content))
                labels.append(0)
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
    if max_pairs is not None:
        pairs, labels = pairs[:max_pairs], labels[:max_pairs]
    return pairs, np.asarray(labels, dtype=np.int8)


def _existing(collection: Any, ids: list[str]) -> list[Any]:
    """Documents of ``ids`` that the collection holds (qrels may name documents missing from the corpus)."""
    from rankfunnel.errors import DocumentNotFoundError

    try:
        return list(collection.get(ids)) if ids else []
    except DocumentNotFoundError:
        out = []
        for d in ids:
            try:
                out += list(collection.get([d]))
            except DocumentNotFoundError:
                continue
        return out
