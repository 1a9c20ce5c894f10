"""Figures of a class task's probabilities: ROC and precision-recall curves, and the reliability diagram.

Both read predictions.csv: ``<task>_true`` and ``<task>_pred`` (class names), ``<task>_prob`` (the probability of
the predicted class) and ``<task>_prob_<class>`` (the probability of each scored class, one against the rest; a
binary task's positive class only), as :meth:`~mtl_core.tasks.kinds.ClassTask.score_columns` writes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..tasks import metrics as M
from .canvas import CaseImages, class_label, figure, wrap

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MAX_CURVES = 10  # classes drawn in one panel at most (the most frequent), so that a legend stays readable


def scored_classes(task: dict[str, Any], columns: Any) -> list[str]:
    """The classes of ``task`` whose probability column ``<task>_prob_<class>`` is in ``columns``."""
    return [str(c) for c in task.get("classes") or [] if f"{task['name']}_prob_{c}" in columns]


def _curves(task: dict[str, Any], predictions: pd.DataFrame) -> tuple[list[str], list[str], str]:
    """The labelled cases' true classes, the classes drawn (by support, at most :data:`_MAX_CURVES`) and a note."""
    name = task["name"]
    true = [class_label(v) for v in predictions[f"{name}_true"]]
    classes = scored_classes(task, predictions.columns)
    support = {c: true.count(c) for c in classes}
    drawn = sorted(classes, key=lambda c: -support[c])[:_MAX_CURVES]
    note = f"the {_MAX_CURVES} most frequent of {len(classes)} classes" if len(classes) > _MAX_CURVES else ""
    return true, [c for c in classes if c in drawn], note


def render_roc(task: dict[str, Any], predictions: pd.DataFrame, note: str = "",
               images: CaseImages | None = None) -> Figure:
    """ROC (left) and precision-recall (right) curves of each scored class against the rest, with their areas;
    a class that is absent, or the only one, among the labelled cases has no curve."""
    name = task["name"]
    true, classes, more = _curves(task, predictions)
    labelled = np.array([t != "" for t in true])
    fig = figure(10.0, 4.8)
    roc, pr = fig.subplots(1, 2)
    roc.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="chance")
    for k, cls in enumerate(classes):
        score = pd.to_numeric(predictions[f"{name}_prob_{cls}"], errors="coerce").to_numpy(np.float64)
        keep = labelled & np.isfinite(score)
        positive = np.array([t == cls for t in true])[keep]
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = M.roc_points(positive, score[keep])
        label = wrap(f"{cls} ({M.roc_auc(positive, score[keep]):.3f})", 28)
        roc.plot(fpr, tpr, color=f"C{k % 10}", linewidth=1.6, label=label)
        recall, precision, _ = M.precision_recall_points(positive, score[keep])
        pr.step(recall, precision, where="pre", color=f"C{k % 10}", linewidth=1.6,
                label=wrap(f"{cls} ({M.average_precision(positive, score[keep]):.3f}; prevalence "
                           f"{positive.mean():.2f})", 34))
    roc.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
            xlim=(0, 1), ylim=(0, 1.02), title=wrap(f"{name}: ROC (area)", 40))
    pr.set(xlabel="recall (sensitivity)", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=wrap(f"{name}: precision-recall (average precision)", 40))
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if ax is roc else "best", fontsize=8)
    shown = "; ".join(x for x in (f"n={int(labelled.sum())}", more, note) if x)
    fig.suptitle(wrap(f"one class against the rest; {shown}", 90), fontsize=10)
    return fig


def render_calibration(task: dict[str, Any], predictions: pd.DataFrame, note: str = "",
                       images: CaseImages | None = None) -> Figure:
    """Reliability diagram: per equal-width bin of the predicted class's probability, the share of right
    predictions against the mean probability (on the diagonal when calibrated), the number of cases below."""
    name = task["name"]
    true = [class_label(v) for v in predictions[f"{name}_true"]]
    pred = [class_label(v) for v in predictions[f"{name}_pred"]]
    confidence = pd.to_numeric(predictions[f"{name}_prob"], errors="coerce").to_numpy(np.float64)
    keep = np.array([t != "" and p != "" for t, p in zip(true, pred, strict=True)]) & np.isfinite(confidence)
    correct = np.array([t == p for t, p in zip(true, pred, strict=True)])[keep]
    counts, mean_confidence, accuracy = M.calibration_bins(correct, confidence[keep])
    ece = M.expected_calibration_error(correct, confidence[keep])
    edges = np.linspace(0.0, 1.0, M.ECE_BINS + 1)
    fig = figure(5.6, 6.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="calibrated")
    filled = counts > 0
    top.bar(edges[:-1][filled], accuracy[filled], width=1.0 / M.ECE_BINS, align="edge", color="C0", alpha=0.75,
            edgecolor="white", label="share right")
    top.plot(mean_confidence[filled], accuracy[filled], "o", color="C1", markersize=4, label="mean probability")
    top.set(ylabel="share of right predictions", xlim=(0, 1), ylim=(0, 1.02))
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(edges[:-1], counts, width=1.0 / M.ECE_BINS, align="edge", color="0.6", edgecolor="white")
    bottom.set(xlabel="probability of the predicted class", ylabel="cases")
    shown = f"ECE {ece:.3f}" if ece == ece else "ECE n/a"
    top.set_title(wrap(f"{name}: {shown} ({M.ECE_BINS} bins, n={int(keep.sum())})", 48)
                  + (f"\n{note}" if note else ""), fontsize=11)
    return fig


__all__ = ["render_calibration", "render_roc", "scored_classes"]
