"""Calibrate raw model logits into probabilities: temperature scaling or isotonic regression.

A network's sigmoid output ranks candidates but need not read as a probability. Both
calibrators are fitted on a held-out (validation) set of logits and labels, never on the
training set:

- :class:`TemperatureCalibrator` (Guo et al. 2017): ``p = sigmoid((z - b) / T)`` with ``T``
  and ``b`` minimising the log loss; monotone, two parameters, safe with few samples.
- :class:`IsotonicCalibrator`: a non-decreasing step function of the logit fitted by the
  pool-adjacent-violators algorithm (:class:`sklearn.isotonic.IsotonicRegression`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from astrid.errors import AstridError

__all__ = [
    "Calibrator",
    "IdentityCalibrator",
    "IsotonicCalibrator",
    "TemperatureCalibrator",
    "calibrator_from_dict",
    "fit_calibrator",
]


class CalibrationError(AstridError):
    """A calibrator that cannot be fitted or restored."""


class Calibrator:
    """Map logits (any shape) to calibrated probabilities."""

    kind = "base"

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able description (``kind`` plus parameters)."""
        raise NotImplementedError


class IdentityCalibrator(Calibrator):
    """The plain sigmoid (no calibration)."""

    kind = "identity"

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(expit(np.asarray(logits, dtype=np.float64)))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


class TemperatureCalibrator(Calibrator):
    """``p = sigmoid((z - bias) / temperature)``.

    Parameters
    ----------
    temperature : float
        Positive divisor of the logit.
    bias : float
        Logit offset.
    """

    kind = "temperature"

    def __init__(self, temperature: float = 1.0, bias: float = 0.0) -> None:
        if not temperature > 0:
            raise CalibrationError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.bias = float(bias)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = (np.asarray(logits, dtype=np.float64) - self.bias) / self.temperature
        return np.asarray(expit(z))

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> TemperatureCalibrator:
        """Fit ``temperature`` and ``bias`` by minimising the binary log loss."""
        z = np.asarray(logits, dtype=np.float64).ravel()
        y = np.asarray(labels, dtype=np.float64).ravel()

        def loss(params: np.ndarray) -> float:
            log_t, b = params
            s = (z - b) / np.exp(log_t)
            # log(1 + exp(-s)) for y = 1, log(1 + exp(s)) for y = 0, computed stably.
            return float(np.mean(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * (1 - y)))

        res = minimize(loss, x0=np.array([0.0, 0.0]), method="Nelder-Mead")
        return cls(float(np.exp(res.x[0])), float(res.x[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "temperature": self.temperature, "bias": self.bias}


class IsotonicCalibrator(Calibrator):
    """A non-decreasing, piecewise-linear map from logit to probability.

    Parameters
    ----------
    x, y : array_like
        Knots: logits (increasing) and their probabilities (non-decreasing).
    """

    kind = "isotonic"

    def __init__(self, x: np.ndarray | list[float], y: np.ndarray | list[float]) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if self.x.size == 0 or self.x.shape != self.y.shape:
            raise CalibrationError("isotonic calibrator needs equal, non-empty knot arrays")

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)
        return np.interp(z, self.x, self.y).reshape(z.shape)

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> IsotonicCalibrator:
        """Fit by pool-adjacent-violators (scikit-learn's IsotonicRegression)."""
        from sklearn.isotonic import IsotonicRegression

        z = np.asarray(logits, dtype=np.float64).ravel()
        y = np.asarray(labels, dtype=np.float64).ravel()
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
        return cls(iso.X_thresholds_, iso.y_thresholds_)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": self.x.tolist(), "y": self.y.tolist()}


def fit_calibrator(kind: str, logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Fit a calibrator of ``kind`` (``"temperature"``, ``"isotonic"`` or ``"identity"``).

    Raises
    ------
    CalibrationError
        For an unknown kind or labels of only one class.
    """
    y = np.asarray(labels)
    if kind == "identity":
        return IdentityCalibrator()
    if np.unique(y).size < 2:
        raise CalibrationError(
            "calibration set holds only one class", hint="use a validation set with both"
        )
    if kind == "temperature":
        return TemperatureCalibrator.fit(logits, y)
    if kind == "isotonic":
        return IsotonicCalibrator.fit(logits, y)
    raise CalibrationError(
        f"unknown calibration {kind!r}", hint="use temperature, isotonic or identity"
    )


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """Rebuild a calibrator saved with :meth:`Calibrator.to_dict`."""
    kind = data.get("kind")
    if kind == "identity":
        return IdentityCalibrator()
    if kind == "temperature":
        return TemperatureCalibrator(data["temperature"], data.get("bias", 0.0))
    if kind == "isotonic":
        return IsotonicCalibrator(data["x"], data["y"])
    raise CalibrationError(f"unknown saved calibration kind {kind!r}")
