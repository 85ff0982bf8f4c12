"""Distil a teacher reranker into a small cross-encoder on the stage-1 candidates of unlabelled queries."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.models import DEFAULT_EMBEDDER
from rankfunnel.progress import track
from rankfunnel.train.card import write_model_card
from rankfunnel.train.loop import RuntimeConfig, base_licence, load_student, run_settings, train_in_tempdir
from rankfunnel.train.mining import search_lists
from rankfunnel.validate import check_retriever


@dataclass(frozen=True, slots=True, kw_only=True)
class DistilConfig:
    """Settings of :func:`distil_reranker`.

    Attributes:
        base: Hub id or folder of the student's start model.
        layers: Keep only the first N encoder layers of ``base`` (a smaller, faster student); ``None``: all.
        loss: ``mse`` (MSE between student and teacher logits) or ``listwise`` (ListNet: cross-entropy between
            the softmax of the teacher's and the student's logits per query, i.e. KL up to a constant).
        candidates: Stage-1 candidates per query scored by the teacher.
        retriever: Stage-1 retriever that proposes the candidates.
        max_length, epochs, batch_size, learning_rate, max_minutes, max_steps, seed, device: As in training.
        head_learning_rate: Peak learning rate of the student's classification head (``None``: same as
            ``learning_rate``). A student started from a bi-encoder has a fresh head, which sits on a
            plateau at encoder learning rates (docs/training.md); 1e-3 gets it moving.
        held_out: Fraction of queries kept to measure student-teacher agreement.
        teacher_batch_size: Pairs per teacher ``predict`` call.
        domain: The domain the model card declares (``reranker="auto"`` uses the model only for searches of
            that domain); ``None`` declares none, so only naming the folder uses it.
    """

    base: str = DEFAULT_EMBEDDER
    layers: int | None = None
    loss: Literal["mse", "listwise"] = "mse"
    candidates: int = 20
    retriever: str = "dense"
    max_length: int = 256
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float | None = 1e-3
    warmup_ratio: float = 0.1
    held_out: float = 0.1
    max_minutes: float | None = None
    max_steps: int | None = None
    seed: int = 42
    device: str | None = None
    teacher_batch_size: int = 32
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "listwise"):
            raise InvalidInputError(f"loss must be 'mse' or 'listwise', got {self.loss!r}.")
        check_retriever(self.retriever)
        if self.candidates < 2 or self.batch_size < 1 or self.epochs <= 0 or not 0 <= self.held_out < 1:
            raise InvalidInputError(
                "candidates must be >= 2, batch_size >= 1, epochs > 0, held_out in [0, 1)."
            )
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise InvalidInputError(f"max_minutes must be > 0, got {self.max_minutes}.")


@dataclass(frozen=True, slots=True)
class DistilResult:
    """The student folder, student-teacher agreement on held-out queries, and run facts."""

    out_dir: Path
    metrics: dict[str, float]
    steps: int
    seconds: float
    stopped_by_cap: bool
    queries: int
    pairs: int


def teacher_scores(
    teacher: Any, pairs: Sequence[tuple[str, str]], batch_size: int, show_progress: bool
) -> np.ndarray:
    """Raw teacher scores of all pairs, batched; a failing or non-finite teacher raises a clear error."""
    out = []
    for i in track(range(0, len(pairs), batch_size), "teacher scoring", enabled=show_progress, transient=False):
        chunk = list(pairs[i : i + batch_size])
        try:
            raw = np.asarray(teacher.predict(chunk), dtype=np.float32).reshape(-1)
        except RerankerUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - any teacher failure becomes one clear error
            raise RerankerUnavailableError(
                f"The teacher failed while scoring ({exc}); check that it loads "
                "with `rankfunnel rerank` first."
            ) from exc
        if raw.shape[0] != len(chunk) or not np.isfinite(raw).all():
            raise RerankerUnavailableError(
                "The teacher returned a wrong number of scores or non-finite scores."
            )
        out.append(raw)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def agreement(teacher: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
    """Mean per-query Spearman correlation and top-1 agreement between two scorings of the same lists."""
    if not teacher:
        return {}
    rho = [_spearman(t, o) for t, o in zip(teacher, other, strict=True)]
    top1 = [float(int(np.argmax(t)) == int(np.argmax(o))) for t, o in zip(teacher, other, strict=True)]
    return {"spearman": float(np.mean(rho)), "top1_agreement": float(np.mean(top1))}


def distil_reranker(
    teacher: Any,
    queries: Sequence[str],
    stage1: Any,
    out_dir: str | Path,
    config: DistilConfig = DistilConfig(),
    *,
    teacher_name: str = "teacher",
    show_progress: bool = False,
) -> DistilResult:
    """Train a student cross-encoder to reproduce ``teacher``'s scores on stage-1 candidates.

    Args:
        teacher: Any reranker with ``predict(pairs) -> raw scores`` (e.g. ``rankfunnel.rerank.load_reranker``,
            remote ones included).
        queries: Unlabelled query texts.
        stage1: A collection with ``search`` whose hits carry their documents.
        out_dir: Folder for the student ``CrossEncoder`` and its model card.
        config: Student, loss and optimisation settings.
        teacher_name: Name of the teacher, for the model card.
        show_progress: Progress bars.

    Returns:
        The folder and held-out agreement with the teacher: the student's, and stage 1's as the baseline.

    Examples:
        >>> from rankfunnel.rerank import load_reranker
        >>> distil_reranker(load_reranker("models/scifact-minilm-reranker"), queries, collection,
        ...                 "models/student", DistilConfig(layers=2))  # doctest: +SKIP
    """
    start = time.monotonic()
    queries = list(dict.fromkeys(q for q in queries if q.strip()))
    if len(queries) < 2:
        raise InvalidInputError(
            "Distillation needs at least 2 non-empty queries; pass a larger --queries file."
        )
    lists = _candidate_lists(stage1, queries, config, show_progress)
    pairs = [(q, d) for q, docs in lists for d in docs]
    per_query = _per_list(teacher_scores(teacher, pairs, config.teacher_batch_size, show_progress), lists)
    order = list(range(len(lists)))
    random.Random(config.seed).shuffle(order)
    n_held = int(round(config.held_out * len(lists)))
    held, train = sorted(order[:n_held]), sorted(order[n_held:])
    model = load_student(
        config.base, max_length=config.max_length, device=config.device, layers=config.layers
    )
    loss, run_cfg = _loss_and_batching(model, config)
    steps, capped, _ = train_in_tempdir(
        model,
        prefix="rankfunnel-distil-",
        train_dataset=_distil_dataset(lists, per_query, train, config.loss),
        loss=loss,
        evaluator=None,
        config=run_cfg,
        show_progress=show_progress,
        start=start,
    )
    metrics = _held_out_agreement(model, lists, per_query, held)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    seconds = time.monotonic() - start
    settings = {
        **_teacher_and_loss_settings(config, teacher_name),
        **run_settings(config, steps=steps, capped=capped, seconds=seconds),
        "train queries": len(train),
        "held-out queries": len(held),
        "teacher pairs": len(pairs),
    }
    write_model_card(
        out,
        title=f"Cross-encoder reranker distilled from {teacher_name}",
        base_model=config.base,
        model_licence=base_licence(config.base),
        data_name=f"{len(queries)} unlabelled queries with stage-1 candidates",
        domain=config.domain,
        data_licence="the licences of the query file, the indexed corpus and the teacher's outputs apply",
        summary=(
            f"A student cross-encoder trained to reproduce the scores of `{teacher_name}` on the top "
            f"{config.candidates} {config.retriever} candidates of {len(queries)} queries. Metrics compare "
            "held-out rankings with the teacher's (Spearman, top-1 agreement); `stage1_*` is the baseline."
        ),
        settings=settings,
        metrics=metrics,
    )
    return DistilResult(out, metrics, steps, seconds, capped, len(lists), len(pairs))


def _loss_and_batching(model: Any, config: DistilConfig) -> tuple[Any, Any]:
    """The loss of ``config.loss`` and the run config whose batch size counts that loss's rows."""
    from sentence_transformers.cross_encoder import losses

    if config.loss == "mse":
        return losses.MSELoss(model), config
    loss = losses.ListNetLoss(model, mini_batch_size=config.batch_size)
    return loss, _with_batch(config, max(1, config.batch_size // config.candidates))


def _teacher_and_loss_settings(config: DistilConfig, teacher_name: str) -> dict[str, Any]:
    """Model-card settings of the teacher, the loss, the student and the candidates."""
    return {
        "teacher": teacher_name,
        "loss": "MSELoss on logits" if config.loss == "mse" else "ListNetLoss",
        "student layers": config.layers or "all",
        "candidates per query": config.candidates,
        "retriever": config.retriever,
    }


Lists = list[tuple[str, list[str]]]
"""(query, candidate document texts in stage-1 order), one per query."""


def _candidate_lists(stage1: Any, queries: Sequence[str], config: DistilConfig, show_progress: bool) -> Lists:
    """Each query's stage-1 candidate texts; queries with fewer than 2 candidates are left out."""
    hit_lists = search_lists(
        stage1,
        queries,
        k=config.candidates,
        retriever=config.retriever,
        show_progress=show_progress,
        desc="candidates",
    )
    lists = [
        (q, [h.document.content for h in hits if h.document is not None])
        for q, hits in zip(queries, hit_lists, strict=True)
    ]
    lists = [(q, docs) for q, docs in lists if len(docs) >= 2]
    if len(lists) < 2:
        raise InvalidInputError(
            "Stage 1 returned fewer than 2 documents for most queries; index more documents."
        )
    return lists


def _per_list(flat: np.ndarray, lists: Lists) -> list[np.ndarray]:
    """Cut scores of all the lists' pairs, in order, back into one array per list."""
    bounds = np.cumsum([len(docs) for _, docs in lists])[:-1]
    return list(np.split(flat, bounds))


def _distil_dataset(lists: Lists, per_query: list[np.ndarray], train: list[int], loss: str) -> Any:
    """Training rows: ``query, document, label`` per pair (mse), or ``query, docs, labels`` per list."""
    from datasets import Dataset

    if loss == "mse":
        return Dataset.from_dict(
            {
                "query": [lists[i][0] for i in train for _ in lists[i][1]],
                "document": [d for i in train for d in lists[i][1]],
                "label": [float(s) for i in train for s in per_query[i]],
            }
        )
    return Dataset.from_dict(
        {
            "query": [lists[i][0] for i in train],
            "docs": [lists[i][1] for i in train],
            "labels": [[float(s) for s in per_query[i]] for i in train],
        }
    )


def _held_out_agreement(model: Any, lists: Lists, per_query: list[np.ndarray], held: list[int]) -> dict[str, float]:
    """Student-teacher agreement on the held-out lists, with stage 1's order as the baseline."""
    if not held:
        return {}
    import torch

    held_pairs = [(lists[i][0], d) for i in held for d in lists[i][1]]
    student_raw = np.asarray(
        model.predict(held_pairs, activation_fn=torch.nn.Identity(), batch_size=32), dtype=np.float32
    )
    s_lists = _per_list(student_raw, [lists[i] for i in held])
    t_lists = [per_query[i] for i in held]
    stage1_lists = [-np.arange(len(lists[i][1]), dtype=np.float32) for i in held]
    return {
        **{f"student_{k}": v for k, v in agreement(t_lists, s_lists).items()},
        **{f"stage1_{k}": v for k, v in agreement(t_lists, stage1_lists).items()},
        "student_teacher_logit_mse": float(np.mean((np.concatenate(s_lists) - np.concatenate(t_lists)) ** 2)),
    }


def _with_batch(config: DistilConfig, batch_size: int) -> Any:
    return RuntimeConfig(config, batch_size=batch_size)
