"""Evaluation figures and calibration, checked against hand-computed values and theory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from astrid.model.calibration import (
    IsotonicCalibrator,
    TemperatureCalibrator,
    calibrator_from_dict,
    fit_calibrator,
)
from astrid.model.evaluate import (
    EvaluationError,
    classification_metrics,
    fpr_at_fnr,
    plot_confusion_matrix,
    plot_roc_pr,
    time_scoring,
)


def test_fpr_at_fnr_by_hand() -> None:
    # 100 reals scored 0.01..1.00, bogus scored 0.005, 0.015, ..., 0.995 (100 of them)
    reals = np.arange(1, 101) / 100
    bogus = (np.arange(100) + 0.5) / 100
    y = np.r_[np.ones(100), np.zeros(100)]
    s = np.r_[reals, bogus]
    # losing at most 2 reals -> threshold = third-lowest real = 0.03; bogus >= 0.03: 97
    fpr, thr = fpr_at_fnr(y, s, 0.02)
    assert thr == pytest.approx(0.03)
    assert fpr == pytest.approx(0.97)
    fpr1, thr1 = fpr_at_fnr(y, s, 0.01)
    assert thr1 == pytest.approx(0.02) and fpr1 == pytest.approx(0.98)


def test_classification_metrics_by_hand() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.1, 0.3, 0.6])
    m = classification_metrics(y, s, threshold=0.5)
    # predicted real: 0.9, 0.8, 0.7(bogus), 0.6 -> tp 3, fp 1, fn 1, tn 3
    assert m.confusion == [[3, 1], [1, 3]]
    assert m.precision == pytest.approx(0.75) and m.recall == pytest.approx(0.75)
    assert m.f1 == pytest.approx(0.75)
    # (real, bogus) pairs ranked correctly: all but 0.4<0.7 and 0.6<0.7, 14 of 16
    assert m.roc_auc == pytest.approx(14 / 16)
    perfect = classification_metrics(y, y * 0.9 + 0.05)
    assert perfect.roc_auc == 1.0 and perfect.fpr_at_fnr_2pct == 0.0 and perfect.pr_auc == 1.0


def test_bad_evaluation_input() -> None:
    with pytest.raises(EvaluationError, match="one class"):
        classification_metrics(np.ones(5), np.linspace(0, 1, 5))
    with pytest.raises(EvaluationError, match="NaN"):
        classification_metrics(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(EvaluationError, match="labels but"):
        classification_metrics(np.array([0, 1, 1]), np.array([0.1, 0.2]))


def test_temperature_calibration_recovers_the_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0.0, 2.0, 20000)
    y = (rng.random(true_logit.size) < expit(true_logit)).astype(int)
    overconfident = 3.0 * true_logit + 1.0  # a network 3x too sure, offset by 1
    cal = TemperatureCalibrator.fit(overconfident, y)
    assert cal.temperature == pytest.approx(3.0, rel=0.08)
    assert cal.bias == pytest.approx(1.0, abs=0.25)
    again = calibrator_from_dict(cal.to_dict())
    np.testing.assert_allclose(again(overconfident[:10]), cal(overconfident[:10]))


def test_isotonic_calibration_is_monotone_and_calibrated() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 5000)
    y = (rng.random(z.size) < expit(z / 2)).astype(int)
    cal = fit_calibrator("isotonic", z, y)
    assert isinstance(cal, IsotonicCalibrator)
    grid = np.linspace(-6, 6, 200)
    p = cal(grid)
    assert np.all(np.diff(p) >= 0)
    # calibrated: mean predicted probability in a bin ~ observed real fraction
    sel = (z > 0.5) & (z < 1.5)
    assert cal(z[sel]).mean() == pytest.approx(y[sel].mean(), abs=0.05)
    assert fit_calibrator("identity", z, y)(np.array([0.0]))[0] == pytest.approx(0.5)


def test_timing_and_plots(tmp_path) -> None:
    stamps = np.zeros((40, 3, 8, 8), np.float32)
    speed = time_scoring(lambda b: b.sum(axis=(1, 2, 3)), stamps, batch_size=16)
    assert speed.n_batches == 3 and speed.throughput_per_s > 0
    assert speed.latency_p95_s >= speed.latency_p50_s
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.1, 0.8, 0.3, 0.6, 0.9])
    plot_roc_pr(y, s, str(tmp_path / "roc.png"))
    plot_confusion_matrix(classification_metrics(y, s).confusion, str(tmp_path / "cm.png"))
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "cm.png").stat().st_size > 1000
