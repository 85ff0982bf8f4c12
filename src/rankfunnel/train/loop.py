"""The training loop shared by training and distillation: student loading and CrossEncoderTrainer runs."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError
from rankfunnel.models import DEFAULT_EMBEDDER, read_licence, resolve_model
from rankfunnel.train.callbacks import WallClockCallback

EVAL_NAME = "heldout"
HEAD_MODULES = frozenset({"classifier", "pooler", "score"})
"""Module names of the sequence-classification head (a fresh one when the base is a bi-encoder)."""


def head_param_groups(model: Any, lr: float, head_lr: float | None, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: the classification head at ``head_lr``, the encoder at ``lr``.

    A bi-encoder base (all-MiniLM-L6-v2) gets a randomly initialised head; at encoder learning rates
    (1e-5 to 1e-4) it sits on a long chance-level plateau (measured: loss flat for hundreds of steps on
    CPU), while at 1e-3 it learns within tens of steps. Bias and LayerNorm weights get no weight decay.
    """
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # names are "classifier.weight" on the HF model, "model.classifier.weight" on the CrossEncoder
        is_head = head_lr is not None and not HEAD_MODULES.isdisjoint(name.split(".")[:-1])
        no_decay = name.endswith(".bias") or "LayerNorm" in name or "layernorm" in name
        groups.setdefault((is_head, no_decay), []).append(p)
    return [
        {
            "params": params,
            "lr": (head_lr if is_head and head_lr is not None else lr),
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]


def load_student(base: str, *, max_length: int, device: str | None, layers: int | None = None) -> Any:
    """A CrossEncoder with one output logit from ``base``; ``layers`` keeps the first N encoder layers."""
    from sentence_transformers import CrossEncoder

    from rankfunnel.errors import ModelNotFoundError

    path = resolve_model(base)
    try:
        model = CrossEncoder(path, num_labels=1, max_length=max_length, device=device)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"Cannot load base model {base!r} as a cross-encoder ({exc}). Pass a BERT-style "
            "model folder or hub id (e.g. sentence-transformers/all-MiniLM-L6-v2)."
        ) from exc
    if layers is not None:
        hf = model.model
        encoder = getattr(getattr(hf, "base_model", None), "encoder", None)
        stack = getattr(encoder, "layer", None)
        if encoder is None or stack is None or not 1 <= layers <= len(stack):
            raise InvalidInputError(
                f"Cannot keep {layers} layers of {base!r} (it has "
                f"{len(stack) if stack is not None else 'no BERT-style'} layers)."
            )
        encoder.layer = stack[:layers]
        hf.config.num_hidden_layers = layers
    return model


def run_trainer(
    model: Any,
    *,
    train_dataset: Any,
    loss: Any,
    evaluator: Any | None,
    config: Any,
    workdir: Path,
    show_progress: bool,
    start: float,
) -> tuple[int, bool, Mapping[str, float]]:
    """Run ``CrossEncoderTrainer`` with the cap and (when there is an evaluator) early stopping.

    Returns (steps, stopped_by_cap, last evaluation metrics).
    """
    from transformers import EarlyStoppingCallback

    has_eval = evaluator is not None
    patience = int(getattr(config, "patience", 0))
    cap = WallClockCallback(
        config.max_minutes * 60 if config.max_minutes else float("inf"),
        start=start,
        evaluate_on_stop=has_eval,
    )
    callbacks: list[Any] = [cap]
    if has_eval and patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    trainer = _trainer_class(getattr(config, "head_learning_rate", None))(
        model=model,
        args=_training_arguments(config, workdir, has_eval=has_eval, show_progress=show_progress),
        train_dataset=train_dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=callbacks,
    )
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints logs; keep stdout for --json output
        trainer.train()
    return int(trainer.state.global_step), cap.stopped, _kept_metrics(trainer.state)


def train_in_tempdir(model: Any, *, prefix: str, **run: Any) -> tuple[int, bool, Mapping[str, float]]:
    """:func:`run_trainer` with its checkpoints in a temporary folder that is removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run_trainer(model, workdir=work, **run)
    finally:
        shutil.rmtree(work, ignore_errors=True)


_BEST_METRIC = f"eval_{EVAL_NAME}_ndcg@10"


def _training_arguments(config: Any, workdir: Path, *, has_eval: bool, show_progress: bool) -> Any:
    """``CrossEncoderTrainingArguments`` of a run.

    With an evaluator: evaluation and checkpoints every ``eval_steps``, keeping the best model by held-out
    NDCG@10.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    eval_steps = int(getattr(config, "eval_steps", 100))
    return CrossEncoderTrainingArguments(
        output_dir=str(workdir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        **_warmup(config.warmup_ratio),
        dataloader_pin_memory=False,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps,
        save_strategy="steps" if has_eval else "no",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=has_eval,
        metric_for_best_model=_BEST_METRIC if has_eval else None,
        greater_is_better=True,
        logging_steps=max(1, min(50, eval_steps)),
        disable_tqdm=not show_progress,
        dataloader_num_workers=0,
        use_cpu=(config.device == "cpu"),
    )


def _trainer_class(head_lr: float | None) -> Any:
    """``CrossEncoderTrainer`` whose AdamW gives the classification head its own learning rate."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer

    class _Trainer(CrossEncoderTrainer):  # type: ignore[misc]
        def create_optimizer(self, model: Any = None) -> Any:
            if self.optimizer is None and head_lr is not None:
                import torch

                opt_model = self.model if model is None else model
                self.optimizer = torch.optim.AdamW(
                    head_param_groups(opt_model, self.args.learning_rate, head_lr, self.args.weight_decay)
                )
            return super().create_optimizer(model)

    return _Trainer


def _kept_metrics(state: Any) -> dict[str, float]:
    """Metrics of the kept model: the evaluation whose score is the best one (load_best_model_at_end)."""
    evals = [r for r in state.log_history if _BEST_METRIC in r]
    best = state.best_metric
    kept = next(
        (r for r in evals if best is not None and float(r[_BEST_METRIC]) == float(best)),
        evals[-1] if evals else {},
    )
    last = {k.removeprefix("eval_"): float(v) for k, v in kept.items() if k.startswith(f"eval_{EVAL_NAME}")}
    if kept:
        last["evaluations"] = float(len(evals))
        last["kept_step"] = float(kept.get("step", 0))
    return last


def _warmup(ratio: float) -> dict[str, Any]:
    """Warm-up as a ratio: ``warmup_steps`` takes a float from transformers 5 on (``warmup_ratio`` before)."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"warmup_steps": float(ratio)}
    return {"warmup_ratio": float(ratio)}


def licence_guess(base: str) -> str | None:
    return "apache-2.0" if base == DEFAULT_EMBEDDER else None


def base_licence(base: str) -> str | None:
    """Licence of the student's weights: the base model's card, else what is known of the default base."""
    return read_licence(resolve_model(base)).licence or licence_guess(base)


def run_settings(config: Any, *, steps: int, capped: bool, seconds: float) -> dict[str, Any]:
    """The model-card settings every training run shares: optimisation settings and how the run ended."""
    return {
        "max length": config.max_length,
        "epochs (max)": config.epochs,
        "batch size": config.batch_size,
        "learning rate": config.learning_rate,
        "head learning rate": config.head_learning_rate or config.learning_rate,
        "warm-up ratio": config.warmup_ratio,
        "seed": config.seed,
        "max minutes": config.max_minutes,
        "steps done": steps,
        "stopped by wall-clock cap": capped,
        "wall seconds": round(seconds, 1),
    }


class RuntimeConfig:
    """A config view with some fields replaced (the frozen config itself stays as the user gave it)."""

    def __init__(self, config: Any, **overrides: Any) -> None:
        self._config = config
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides[name] if name in self._overrides else getattr(self._config, name)
