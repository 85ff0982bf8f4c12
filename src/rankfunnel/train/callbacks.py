"""Trainer callbacks: a hard wall-clock cap that still leaves time for a last evaluation."""

from __future__ import annotations

import logging
import time
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class WallClockCallback(TrainerCallback):
    """Stops training once ``max_seconds`` would be exceeded, counting from ``start`` (``time.monotonic``).

    The check runs after every optimiser step. The callback remembers how long evaluations take and stops
    early enough for one more evaluation (when an evaluator is attached) so that the saved model is scored;
    that last evaluation is requested through ``control.should_evaluate``.

    Args:
        max_seconds: The budget in seconds for the whole training run.
        start: ``time.monotonic()`` at the start of the budget (defaults to when training begins).
        evaluate_on_stop: Ask for a final evaluation when the cap stops training.

    Attributes:
        stopped: True when the cap ended the run.
    """

    def __init__(
        self, max_seconds: float, *, start: float | None = None, evaluate_on_stop: bool = True
    ) -> None:
        self.max_seconds = float(max_seconds)
        self.start = start
        self.evaluate_on_stop = evaluate_on_stop
        self.stopped = False
        self.eval_seconds = 0.0
        self._step_seconds = 0.0
        self._last_step: float | None = None
        self._eval_started: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.start is None:
            self.start = time.monotonic()
        self._last_step = time.monotonic()
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self._last_step is not None:
            self._step_seconds = now - self._last_step
        self._last_step = now
        assert self.start is not None
        elapsed = now - self.start
        reserve = self._step_seconds + (self.eval_seconds if self.evaluate_on_stop else 0.0)
        if elapsed + reserve >= self.max_seconds:
            self.stopped = True
            control.should_training_stop = True
            if self.evaluate_on_stop and args.eval_strategy != "no" and not control.should_evaluate:
                control.should_evaluate = True
                control.should_save = True
            log.warning(
                "Wall-clock cap of %.1f min reached after %d steps; stopping.",
                self.max_seconds / 60,
                state.global_step,
            )
        return control

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # Time of the evaluation just done = now - end of the step before it.
        if self._last_step is not None:
            self.eval_seconds = max(self.eval_seconds, time.monotonic() - self._last_step)
            self._last_step = time.monotonic()
        return control
