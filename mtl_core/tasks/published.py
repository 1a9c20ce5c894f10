"""The metrics of class probabilities that papers report: ROC AUC, PR AUC, sensitivity and specificity at a
threshold chosen on the validation part, and the expected calibration error.

A task scores one or more *columns* of its probabilities (N, K) one against the rest: a binary task its positive
column, a classification task every class; with several columns ROC AUC, PR AUC, sensitivity and specificity are
their unweighted means (macro) over the classes where each is defined. The ECE is of the top-label confidence, the
probability of the predicted class, against whether that class is right (Guo et al. 2017), in
:data:`~mtl_core.tasks.metrics.ECE_BINS` equal-width bins. A metric that is undefined is NaN, with the reason.
"""

from __future__ import annotations

import numpy as np

from . import metrics as M

#: metric key -> True when higher is better
PUBLISHED_METRICS = {"roc_auc": True, "pr_auc": True, "sensitivity": True, "specificity": True, "ece": False}


def _classes_seen(truth: np.ndarray) -> str:
    seen = np.unique(truth)
    return f"{len(seen)} class{'es' if len(seen) != 1 else ''}"


def choose_thresholds(truth: np.ndarray, probs: np.ndarray, columns: list[int],
                      target_sensitivity: float | None) -> tuple[list[float | None], str]:
    """One threshold per scored column, chosen on labelled validation cases (``truth`` class indices (N,),
    ``probs`` (N, K)), None where it cannot be chosen; and why when none could be."""
    if len(truth) == 0:
        return [None] * len(columns), "no labelled validation case to choose the decision threshold on"
    chosen: list[float | None] = []
    for column in columns:
        value = M.choose_threshold(truth == column, probs[:, column], target_sensitivity)
        chosen.append(None if np.isnan(value) else value)
    if all(c is None for c in chosen):
        if len(np.unique(truth)) > 1:
            return chosen, "the validation scores are constant: no decision threshold separates its cases"
        return chosen, (f"the validation part has {_classes_seen(truth)} only: no decision threshold can be chosen "
                        f"on it")
    return chosen, ""


def _macro(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def probability_metrics(truth: np.ndarray, probs: np.ndarray, columns: list[int],
                        thresholds: list[float | None] | None) -> tuple[dict[str, float], dict[str, str]]:
    """ROC AUC, PR AUC, ECE and (unless ``thresholds`` is None) sensitivity and specificity of labelled cases,
    and the reason of every NaN among them.

    Args:
        truth: class indices (N,) of labelled cases.
        probs: class probabilities (N, K).
        columns: the columns scored one against the rest (binary: [1]).
        thresholds: per column, from :func:`choose_thresholds`; None: sensitivity and specificity are left out.
    """
    truth = np.asarray(truth).astype(int)
    nan, n = float("nan"), len(truth)
    ranking = [(truth == c, probs[:, c]) for c in columns]
    out = {"roc_auc": _macro([M.roc_auc(p, s) for p, s in ranking]) if n else nan,
           "pr_auc": _macro([M.average_precision(p, s) if p.any() and not p.all() else nan for p, s in ranking])
           if n else nan}
    if thresholds is not None:
        pairs = [M.sensitivity_specificity(p, s, nan if t is None else t)
                 for (p, s), t in zip(ranking, thresholds, strict=True)]
        out["sensitivity"] = _macro([a for a, _ in pairs])
        out["specificity"] = _macro([b for _, b in pairs])
    predicted = probs.argmax(axis=1)
    out["ece"] = M.expected_calibration_error(predicted == truth, probs.max(axis=1)) if n else nan
    return out, _reasons(out, truth, thresholds)


def _reasons(out: dict[str, float], truth: np.ndarray, thresholds: list[float | None] | None) -> dict[str, str]:
    if len(truth) == 0:
        return {k: "no labelled held-out case" for k in out}
    one_class = f"the {len(truth)} labelled held-out cases hold {_classes_seen(truth)} only"
    reasons = {k: one_class for k in ("roc_auc", "pr_auc") if np.isnan(out[k])}
    for key in ("sensitivity", "specificity"):
        if key in out and np.isnan(out[key]):
            no_threshold = thresholds is not None and all(t is None for t in thresholds)
            reasons[key] = "no decision threshold was chosen" if no_threshold else one_class
    return reasons


__all__ = ["PUBLISHED_METRICS", "choose_thresholds", "probability_metrics"]
