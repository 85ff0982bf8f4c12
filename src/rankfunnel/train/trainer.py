"""Fine-tune a BERT-style cross-encoder on labelled queries with sentence-transformers' trainer."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from rankfunnel.errors import InvalidInputError
from rankfunnel.models import DEFAULT_EMBEDDER
from rankfunnel.train.card import data_licence_note, write_model_card
from rankfunnel.train.data import LabelledData, split_queries
from rankfunnel.train.loop import (
    EVAL_NAME,
    RuntimeConfig,
    base_licence,
    load_student,
    run_settings,
    train_in_tempdir,
)
from rankfunnel.train.mining import MiningConfig, mine_hard_negatives, search_lists

log = logging.getLogger(__name__)

Loss = Literal["mnrl", "bce", "listwise"]
LOSSES: tuple[str, ...] = get_args(Loss)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Settings of :func:`train_reranker`.

    Attributes:
        base: Hub id or folder of the start model (a bi-encoder gets a fresh 1-logit head).
        layers: Keep only the first N encoder layers of ``base`` (faster; ``None`` keeps all).
        loss: ``mnrl`` (default: softmax cross-entropy over raw logits of each positive against its query's
            hard negatives plus ``random_negatives`` in-batch documents, sentence-transformers' cross-encoder
            ``MultipleNegativesRankingLoss`` with scale 1 and no activation), ``bce`` (pointwise, positives
            vs hard negatives) or ``listwise`` (LambdaLoss per query list). Measured on SciFact: ``mnrl``
            beats stage 1 on held-out queries after ~170 steps while ``bce`` stays on its chance plateau for
            hundreds of steps; see docs/training.md.
        random_negatives: ``mnrl`` only: extra negatives per positive drawn from the other rows of the batch.
        mining: How hard negatives are mined from stage 1.
        max_length: Tokens per (query, document) pair; longer pairs are truncated.
        epochs: Passes over the training pairs.
        batch_size: (query, document) pairs per optimiser step (listwise: rounded to whole queries).
        learning_rate: Peak learning rate of the encoder (linear warm-up over ``warmup_ratio``, then
            linear decay).
        head_learning_rate: Peak learning rate of the classification head (same schedule); ``None`` uses
            ``learning_rate`` for everything. A fresh head on a bi-encoder needs about 1e-3 to leave the
            chance-level plateau within a CPU budget (see docs/training.md).
        warmup_ratio: Fraction of steps spent warming up.
        held_out: Fraction (or count) of the training queries kept for evaluation and early stopping.
        eval_depth: Stage-1 candidates (first mining retriever) reranked per held-out query by the evaluator.
        eval_steps: Steps between evaluations (and checkpoints).
        patience: Evaluations without improvement before early stopping.
        max_minutes: Hard wall-clock cap for the training loop (mining not included); ``None`` for none.
        max_steps: Stop after this many steps (``None``: the epochs decide).
        seed: Seed of the split, the negative sampling and the trainer.
        device: ``cpu``, ``cuda``, ... (``None``: the trainer's choice).
        data_licence: Licence of the training data, stated in the model card.
        domain: The domain the model card declares (default: the dataset's name); ``reranker="auto"`` uses the
            model only for searches of that domain.
    """

    base: str = DEFAULT_EMBEDDER
    layers: int | None = None
    loss: Loss = "mnrl"
    random_negatives: int = 4
    mining: MiningConfig = field(default_factory=MiningConfig)
    max_length: int = 256
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float | None = 1e-3
    warmup_ratio: float = 0.1
    held_out: float = 0.1
    eval_depth: int = 30
    eval_steps: int = 100
    patience: int = 3
    max_minutes: float | None = None
    max_steps: int | None = None
    seed: int = 42
    device: str | None = None
    data_licence: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}.")
        if self.random_negatives < 0:
            raise InvalidInputError(f"random_negatives must be >= 0, got {self.random_negatives}.")
        if self.max_length < 16 or self.batch_size < 1 or self.epochs <= 0 or self.eval_steps < 1:
            raise InvalidInputError("max_length must be >= 16, batch_size and eval_steps >= 1, epochs > 0.")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise InvalidInputError(f"max_minutes must be > 0, got {self.max_minutes}.")
        if self.held_out < 0 or (self.held_out >= 1 and not float(self.held_out).is_integer()):
            raise InvalidInputError(
                f"held_out must be a fraction in [0, 1) or a whole count, got {self.held_out}."
            )


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What :func:`train_reranker` produced: the model folder, its metrics and how the run ended."""

    out_dir: Path
    metrics: Mapping[str, float]
    steps: int
    seconds: float
    stopped_by_cap: bool
    train_queries: int
    held_out_queries: int
    train_examples: int


def doc_text(data: LabelledData, did: str) -> str:
    return data.corpus[did].content


def build_train_dataset(
    data: LabelledData, qids: Sequence[str], negatives: Mapping[str, list[str]], loss: Loss, seed: int = 0
) -> Any:
    """A ``datasets.Dataset`` in the column layout the chosen loss expects.

    ``mnrl``: one ``query, positive, negative_1..n`` row per (query, positive), ``n`` = the most hard
    negatives any query has; a query with fewer is topped up with documents drawn at random from the corpus
    (never one of its judged documents), seeded. ``bce``: ``query, document, label`` rows (1.0 per positive,
    0.0 per negative). ``listwise``: one row per query with ``query, docs, labels`` (positives first, graded
    labels kept).
    """
    from datasets import Dataset

    if loss == "mnrl":
        width = max((len(negatives.get(q, [])) for q in qids), default=0)
        rng = random.Random(seed)
        ids = sorted(data.corpus)
        cols: dict[str, list[str]] = {"query": [], "positive": []}
        cols.update({f"negative_{i + 1}": [] for i in range(width)})
        for q in qids:
            judged = set(data.qrels.get(q, {}))
            negs = list(negatives.get(q, []))
            while len(negs) < width and len(ids) > len(judged) + len(negs):
                d = rng.choice(ids)
                if d not in judged and d not in negs:
                    negs.append(d)
            if len(negs) < width:
                continue  # a corpus too small to fill the row
            for p in data.positives(q):
                cols["query"].append(data.queries[q])
                cols["positive"].append(doc_text(data, p))
                for i, n in enumerate(negs):
                    cols[f"negative_{i + 1}"].append(doc_text(data, n))
        return Dataset.from_dict(cols)

    if loss == "bce":
        rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
        for q in qids:
            for d, lab in [(p, 1.0) for p in data.positives(q)] + [(n, 0.0) for n in negatives.get(q, [])]:
                rows["query"].append(data.queries[q])
                rows["document"].append(doc_text(data, d))
                rows["label"].append(lab)
        return Dataset.from_dict(rows)
    lists: dict[str, list[Any]] = {"query": [], "docs": [], "labels": []}
    for q in qids:
        pos = data.positives(q)
        grades = [float(data.qrels[q][p]) for p in pos]
        negs = negatives.get(q, [])
        if not pos or not negs:
            continue
        lists["query"].append(data.queries[q])
        lists["docs"].append([doc_text(data, d) for d in pos + negs])
        lists["labels"].append(grades + [0.0] * len(negs))
    return Dataset.from_dict(lists)


def build_eval_samples(
    data: LabelledData,
    qids: Sequence[str],
    stage1: Any,
    depth: int,
    show_progress: bool = False,
    retriever: str = "dense",
) -> list[dict[str, Any]]:
    """Held-out samples for ``CrossEncoderRerankingEvaluator``: stage-1 top-``depth`` in stage-1 order."""
    lists = search_lists(
        stage1,
        [data.queries[q] for q in qids],
        k=depth,
        retriever=retriever,
        show_progress=show_progress,
        desc="held-out candidates",
    )
    samples = []
    for q, hits in zip(qids, lists, strict=True):
        pos = data.positives(q)
        if pos:
            samples.append(
                {
                    "query": data.queries[q],
                    "positive": [doc_text(data, p) for p in pos],
                    "documents": [doc_text(data, h.id) for h in hits if h.id in data.corpus],
                }
            )
    return samples


def train_reranker(
    data: LabelledData,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    stage1: Any,
    stage1_description: str = "",
    show_progress: bool = False,
) -> TrainResult:
    """Fine-tune a cross-encoder on ``data`` with hard negatives from ``stage1``; save it with a model card.

    Args:
        data: Corpus, queries and qrels of the training split (see :func:`load_labelled`).
        out_dir: Folder for the trained ``CrossEncoder`` (created; existing model files are overwritten).
        config: Loss, mining and optimisation settings.
        stage1: A collection over ``data.corpus`` with ``search`` (dense and BM25), used to mine negatives
            and to build the held-out reranking evaluation.
        stage1_description: How stage 1 was built, for the model card.
        show_progress: Progress bars for mining and training.

    Returns:
        The model folder, held-out metrics (stage-1 order and reranked NDCG@10, MRR@10, MAP) and run facts.

    Examples:
        >>> from rankfunnel.train import TrainConfig, load_labelled, train_reranker
        >>> data = load_labelled("../shared/datasets/scifact", "train")  # doctest: +SKIP
        >>> train_reranker(data, "models/scifact-reranker", TrainConfig(max_minutes=25),
        ...                stage1=collection)  # doctest: +SKIP
    """
    start = time.monotonic()
    out = Path(out_dir)
    train_q, held_q = split_queries(
        [q for q in data.queries if data.positives(q)], config.held_out, config.seed
    )
    negatives = mine_hard_negatives(
        stage1,
        {q: data.queries[q] for q in train_q},
        data.qrels,
        config.mining,
        seed=config.seed,
        show_progress=show_progress,
    )
    train_ds = build_train_dataset(data, train_q, negatives, config.loss, config.seed)
    if len(train_ds) == 0:
        raise InvalidInputError(
            "No training example could be built (no query has both a positive and a "
            "negative); add documents to the corpus or lower --negatives."
        )
    eval_retriever = config.mining.retrievers[0]
    evaluator = _held_out_evaluator(
        build_eval_samples(data, held_q, stage1, config.eval_depth, show_progress, eval_retriever) if held_q else []
    )
    model = load_student(
        config.base, max_length=config.max_length, device=config.device, layers=config.layers
    )
    loss, run_cfg = _loss_and_batching(model, config)
    steps, capped, metrics = train_in_tempdir(
        model,
        prefix="rankfunnel-train-",
        train_dataset=train_ds,
        loss=loss,
        evaluator=evaluator,
        config=run_cfg,
        show_progress=show_progress,
        start=start,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    seconds = time.monotonic() - start
    result_metrics = dict(metrics)
    settings = {
        **_loss_and_mining_settings(config, stage1_description),
        **run_settings(config, steps=steps, capped=capped, seconds=seconds),
        "train queries": len(train_q),
        "held-out queries": len(held_q),
        "train examples": len(train_ds),
    }
    write_model_card(
        out,
        title=f"Cross-encoder reranker fine-tuned on {data.name} ({data.split})",
        base_model=config.base,
        model_licence=base_licence(config.base),
        data_name=f"{data.name} ({data.split} split)",
        domain=config.domain or data.name,
        data_licence=data_licence_note(data.name, config.data_licence),
        summary=(
            f"A BERT-style cross-encoder (one relevance logit) fine-tuned from `{config.base}` on "
            f"{len(train_q)} queries of `{data.name}` with hard negatives mined by rankfunnel's stage 1. "
            f"Metrics are on {len(held_q)} held-out training queries, reranking the {eval_retriever} top "
            f"{config.eval_depth} (`base_*` = stage-1 order)."
        ),
        settings=settings,
        metrics={k.removeprefix(f"{EVAL_NAME}_"): v for k, v in result_metrics.items()},
    )
    return TrainResult(out, result_metrics, steps, seconds, capped, len(train_q), len(held_q), len(train_ds))


def _held_out_evaluator(samples: list[dict[str, Any]]) -> Any | None:
    """The reranking evaluator over the held-out samples (None without samples: no early stopping)."""
    if not samples:
        return None
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    return CrossEncoderRerankingEvaluator(
        samples, at_k=10, always_rerank_positives=False, name=EVAL_NAME, batch_size=32, write_csv=False
    )


def _loss_and_batching(model: Any, config: TrainConfig) -> tuple[Any, Any]:
    """The loss of ``config.loss`` and the run config whose batch size counts that loss's rows."""
    import torch
    from sentence_transformers.cross_encoder import losses

    loss: Any
    if config.loss == "mnrl":
        # Plain softmax cross-entropy over the raw logits (scale 1, no activation). The library default
        # (sigmoid, scale 10) saturated on SciFact: at the peak learning rate every logit ran to the same
        # sigmoid plateau and the loss went back to chance for good (docs/training.md, run 4).
        loss = losses.MultipleNegativesRankingLoss(
            model, num_negatives=config.random_negatives, scale=1, activation_fn=torch.nn.Identity()
        )
        # one row holds a positive and its hard negatives; the batch size counts (query, document) pairs
        row_pairs = 1 + config.mining.negatives + config.random_negatives
        # at least 2 rows, so that the in-batch negatives exist
        return loss, RuntimeConfig(config, batch_size=max(2, config.batch_size // row_pairs))
    if config.loss == "bce":
        return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(config.mining.negatives))), config
    per_list = 1 + config.mining.negatives
    loss = losses.LambdaLoss(model, mini_batch_size=config.batch_size)
    return loss, RuntimeConfig(config, batch_size=max(1, config.batch_size // per_list))


def _loss_and_mining_settings(config: TrainConfig, stage1_description: str) -> dict[str, Any]:
    """Model-card settings of the loss, the student and the negative mining."""
    return {
        "loss": {
            "mnrl": f"MultipleNegativesRankingLoss (+{config.random_negatives} in-batch random negatives)",
            "bce": "BinaryCrossEntropyLoss (pos_weight = negatives)",
            "listwise": "LambdaLoss",
        }[config.loss],
        "encoder layers": config.layers or "all",
        "negatives per query": config.mining.negatives,
        "mined from": ", ".join(config.mining.retrievers),
        "mining depth": config.mining.depth,
        "skip top": config.mining.skip_top,
        "relative margin": config.mining.relative_margin,
        "stage 1": stage1_description or "given",
    }


def config_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON-able values."""
    return asdict(config)
