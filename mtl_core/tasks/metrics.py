"""Plain NumPy metrics on already-masked arrays (only labelled cases reach these functions)."""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of exact matches; NaN when there are no cases."""
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _per_class_f1(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 and support for every label present in ``y_true`` or ``y_pred`` (scikit-learn's convention)."""
    labels = np.union1d(y_true, y_pred)
    f1 = np.zeros(len(labels))
    support = np.zeros(len(labels))
    for i, label in enumerate(labels):
        tp = np.sum((y_true == label) & (y_pred == label))
        fp = np.sum((y_true != label) & (y_pred == label))
        fn = np.sum((y_true == label) & (y_pred != label))
        denom = 2 * tp + fp + fn
        f1[i] = 2 * tp / denom if denom else 0.0
        support[i] = np.sum(y_true == label)
    return f1, support


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the labels seen in truth or prediction."""
    if len(y_true) == 0:
        return float("nan")
    f1, _ = _per_class_f1(np.asarray(y_true), np.asarray(y_pred))
    return float(f1.mean())


def f1_weighted(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Per-class F1 averaged with the true class frequencies as weights."""
    if len(y_true) == 0:
        return float("nan")
    f1, support = _per_class_f1(np.asarray(y_true), np.asarray(y_pred))
    return float(np.sum(f1 * support) / max(support.sum(), 1))


def binary_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the positive class (label 1)."""
    if len(y_true) == 0:
        return float("nan")
    tp = np.sum((y_true == 1) & (y_pred == 1))
    denom = 2 * tp + np.sum((y_true == 0) & (y_pred == 1)) + np.sum((y_true == 1) & (y_pred == 0))
    return float(2 * tp / denom) if denom else 0.0


def regression_errors(y_true: np.ndarray, y_pred: np.ndarray, value_range: float | None = None) -> dict[str, float]:
    """MSE, MAE and RMSE in the target's units, plus the same scaled by ``value_range`` to [0, 1] when given."""
    if len(y_true) == 0:
        nan = float("nan")
        out = {"mse": nan, "mae": nan, "rmse": nan}
    else:
        err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
        mse = float(np.mean(err**2))
        out = {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(mse))}
    if value_range:
        out["mse_scaled"] = out["mse"] / value_range**2
        out["mae_scaled"] = out["mae"] / value_range
    return out


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (scikit-learn's ``balanced_accuracy_score``);
    NaN when there are no cases. A majority-class predictor scores 1 / (number of classes)."""
    if len(y_true) == 0:
        return float("nan")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == label] == label) for label in np.unique(y_true)]))
