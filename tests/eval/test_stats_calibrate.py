from __future__ import annotations

import numpy as np
import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.eval.calibrate import expected_calibration_error, fit_calibration
from rankfunnel.eval.stats import paired_lift
from rankfunnel.rerank.calibration import Calibration, load_calibration, save_calibration


def test_bootstrap_detects_a_real_lift_and_not_a_null_one() -> None:
    rng = np.random.default_rng(1)
    before = {f"q{i}": float(v) for i, v in enumerate(rng.random(200))}
    after = {q: min(1.0, v + 0.1) for q, v in before.items()}
    lift = paired_lift(before, after, n_resamples=2000)
    assert lift.ci_low > 0 and lift.p_value < 0.01 and lift.hurt == 0
    assert lift.ci_low <= lift.delta <= lift.ci_high
    noise = {q: v + float(rng.normal(0, 0.05)) for q, v in before.items()}
    null = paired_lift(before, noise, n_resamples=2000)
    assert null.ci_low < 0 < null.ci_high and null.p_value > 0.05
    same = paired_lift(before, before, n_resamples=500)
    assert same.delta == 0 and same.unchanged == 200 and same.p_value == 1.0
    with pytest.raises(InvalidInputError):
        paired_lift({"a": 1.0}, {"b": 1.0})


@pytest.mark.parametrize(("t", "b"), [(3.0, 1.5), (0.5, -2.0)])
def test_calibration_recovers_known_temperature_and_bias(t: float, b: float) -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 4, 20000)
    labels = rng.random(raw.size) < Calibration(temperature=t, bias=b)(raw)
    fit = fit_calibration(raw, labels)
    assert abs(fit.calibration.temperature - t) < 0.1 * t
    assert abs(fit.calibration.bias - b) < 0.15
    assert fit.ece_after < 0.02 and fit.log_loss_after <= fit.log_loss_before + 1e-12


def test_calibration_rejects_one_class_and_nan() -> None:
    with pytest.raises(InvalidInputError):
        fit_calibration(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(InvalidInputError):
        fit_calibration(np.array([np.nan, 2.0]), np.array([0, 1]))


def test_ece_hand_computed() -> None:
    assert expected_calibration_error(np.array([0.05, 0.05, 0.95, 0.95]), np.array([0, 0, 1, 1])) == 0.05
    assert expected_calibration_error(np.array([1.0]), np.array([1])) == 0.0


def test_save_and_load_calibration(tmp_path) -> None:
    assert load_calibration(tmp_path, "m") is None
    save_calibration(tmp_path, "org/my-reranker", Calibration(temperature=2.0, bias=0.5))
    save_calibration(tmp_path, "other", Calibration(temperature=4.0))
    assert load_calibration(tmp_path, "org/my-reranker") == Calibration(temperature=2.0, bias=0.5)
    assert load_calibration(tmp_path, "my-reranker") is None  # keys are identities: no guessing by basename
    assert load_calibration(tmp_path, "other") == Calibration(temperature=4.0)
    (tmp_path / "calibration.json").write_text("{broken")
    from rankfunnel.errors import IndexCorruptError

    with pytest.raises(IndexCorruptError):
        load_calibration(tmp_path, "other")
