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


# -- metrics of scores: ranking, thresholds, calibration -----------------------------------------------------------
# Same definitions as scikit-learn (tests/core/tasks/test_published_metrics.py compares them on random inputs), in
# plain NumPy because the held-out bootstrap calls them a thousand times per task.

#: equal-width confidence bins of the expected calibration error and the reliability diagram
ECE_BINS = 10


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties given their mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` (higher: more likely positive) for the boolean labels ``positive``
    (scikit-learn's ``roc_auc_score``, ties counted half: the Mann-Whitney U statistic); NaN unless both classes
    occur. Constant scores give 0.5."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's ``average_precision_score``: the sum over distinct
    score thresholds of precision times the gain in recall; NaN without a positive case."""
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():
        return float("nan")
    tps, fps, _ = _cumulative_counts(positive, np.asarray(score, dtype=np.float64))
    precision = tps / (tps + fps)
    recall_gain = np.diff(np.concatenate([[0.0], tps / tps[-1]]))
    return float(np.sum(recall_gain * precision))


def _cumulative_counts(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when every case scoring at least each distinct threshold (descending) is called
    positive: (tps, fps, thresholds)."""
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last case of each distinct score
    tps = np.cumsum(positive)[last].astype(np.float64)
    return tps, (last + 1) - tps, score[last]


def roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates and the thresholds (descending; a case is positive when its score is at least
    the threshold), starting at (0, 0) with threshold +inf, as scikit-learn's ``roc_curve`` without dropping
    collinear points. Needs both classes."""
    positive = np.asarray(positive, dtype=bool)
    tps, fps, thresholds = _cumulative_counts(positive, np.asarray(score, dtype=np.float64))
    return (np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]], np.r_[np.inf, thresholds])


def precision_recall_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recall and precision at each distinct threshold (descending), starting at recall 0 with precision 1 and
    threshold +inf; the area under their step curve is :func:`average_precision`. Needs a positive case."""
    positive = np.asarray(positive, dtype=bool)
    tps, fps, thresholds = _cumulative_counts(positive, np.asarray(score, dtype=np.float64))
    return np.r_[0.0, tps / tps[-1]], np.r_[1.0, tps / (tps + fps)], np.r_[np.inf, thresholds]


def choose_threshold(positive: np.ndarray, score: np.ndarray, target_sensitivity: float | None = None) -> float:
    """A decision threshold on ``score`` (positive when ``score >= threshold``) chosen on validation cases among
    the scores themselves: Youden's J (the largest sensitivity + specificity - 1, the highest threshold on a tie),
    or with ``target_sensitivity`` the highest threshold whose sensitivity reaches it. NaN unless both classes
    occur and the scores differ (constant scores separate nothing)."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    if positive.all() or not positive.any() or np.ptp(score) == 0:
        return float("nan")
    fpr, tpr, thresholds = (a[1:] for a in roc_points(positive, score))  # not +inf: "never positive"
    if target_sensitivity is None:
        best = int(np.argmax(tpr - fpr))
    else:
        best = int(np.flatnonzero(tpr >= target_sensitivity - 1e-12)[0])
    return float(thresholds[best])


def sensitivity_specificity(positive: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity (recall of the positives) and specificity (recall of the negatives) when a case is called
    positive at ``score >= threshold``; each NaN when its class is absent or the threshold is NaN."""
    positive = np.asarray(positive, dtype=bool)
    called = np.asarray(score, dtype=np.float64) >= threshold
    nan = float("nan")
    if np.isnan(threshold):
        return nan, nan
    sensitivity = float(called[positive].mean()) if positive.any() else nan
    specificity = float((~called[~positive]).mean()) if (~positive).any() else nan
    return sensitivity, specificity


def calibration_bins(correct: np.ndarray, confidence: np.ndarray, bins: int = ECE_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of ``confidence`` in [0, 1] (bin i holds (i/B, (i+1)/B], the first also 0, as
    scikit-learn's ``calibration_curve``): the number of cases, their mean confidence and their accuracy (NaN
    in an empty bin)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    index = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / counts
        accuracy = np.bincount(index, correct, minlength=bins) / counts
    return counts, mean_confidence, accuracy


def expected_calibration_error(correct: np.ndarray, confidence: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): the mean over cases of |accuracy - confidence| of their confidence bin
    (:func:`calibration_bins`); NaN when there are no cases."""
    counts, mean_confidence, accuracy = calibration_bins(correct, confidence, bins)
    if counts.sum() == 0:
        return float("nan")
    filled = counts > 0
    return float(np.sum(counts[filled] * np.abs(accuracy[filled] - mean_confidence[filled])) / counts.sum())
