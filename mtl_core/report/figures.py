"""Figures of a run folder as PNG: confusion matrices, predicted-vs-true scatters, points on test images (a point
task's, from :mod:`mtl_core.report.point_figures`), learning curves, loss weights.

matplotlib is imported inside the functions (Agg backend, no display needed) so that ``import mtl_core`` stays
light. Every figure uses a constrained layout, so titles, tick labels and legends never overlap or leave the canvas.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..io import atomic_write, positive_int_env
from ..tasks import kind_class
from .canvas import DPI, CaseImages, class_label, figure, plain_text, wrap
from .point_figures import render_points
from .score_figures import render_calibration, render_roc, scored_classes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
_LABEL_WIDTH = 14  # characters per line of a wrapped class name
_TITLE_WIDTH = 48  # characters per line of a wrapped title
#: classes a confusion matrix shows at most (``MTL_MAX_CONFUSION_CLASSES``): 30 make a figure of ~3000 px a side;
#: more are the top classes by support plus one pooled row and column, not a figure of gigapixels
DEFAULT_CONFUSION_CLASSES = 30
CONFUSION_CLASSES_ENV = "MTL_MAX_CONFUSION_CLASSES"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "task"


def _present(values: pd.Series) -> np.ndarray:
    return (values.notna() & (values.astype(str).str.strip() != "")).to_numpy()


def select_cases(predictions: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows to plot and a note for the titles: out-of-fold predictions of repeat 0 only when CV was repeated."""
    note = ""
    if "fold" in predictions.columns and predictions["fold"].nunique() > 1:  # one fold: the held-out part
        note = f"out-of-fold, {predictions['fold'].nunique()} folds"
    if "repeat" in predictions.columns and predictions["repeat"].nunique() > 1:
        first = predictions["repeat"].min()
        note += f"; first of {predictions['repeat'].nunique()} repeats only"
        predictions = predictions[predictions["repeat"] == first]
    return predictions, note


def _title(ax: Axes, text: str, note: str) -> None:
    ax.set_title(wrap(text, _TITLE_WIDTH) + (f"\n{note}" if note else ""), fontsize=11)


def _top_classes(classes: list[str], true: list[str], pred: list[str], note: str) -> tuple[list[str], dict, str]:
    """The classes a confusion matrix shows and the row/column of each label: every class, or past
    ``MTL_MAX_CONFUSION_CLASSES`` the most frequent true classes (in their order) and one pooled class for the rest,
    which the returned note says."""
    limit = positive_int_env(CONFUSION_CLASSES_ENV, DEFAULT_CONFUSION_CLASSES)
    if len(classes) <= limit:
        return classes, {c: i for i, c in enumerate(classes)}, note
    support = pd.Series(true, dtype=object).value_counts()
    order = {c: i for i, c in enumerate(classes)}
    top = sorted(classes, key=lambda c: (-int(support.get(c, 0)), order[c]))[:limit - 1]
    kept = sorted(top, key=order.__getitem__)
    pooled = f"({len(classes) - len(kept)} other classes)"
    index = {c: len(kept) for c in classes} | {c: i for i, c in enumerate(kept)}
    shown = f"top {len(kept)} of {len(classes)} classes by support, the rest pooled"
    log.info("confusion matrix: %s classes, more than %s (%s): showing the %s most frequent", len(classes), limit,
             CONFUSION_CLASSES_ENV, len(kept))
    return [*kept, pooled], index, f"{shown}; {note}" if note else shown


def render_confusion(task: dict[str, Any], predictions: pd.DataFrame, note: str = "",
                     images: CaseImages | None = None) -> Figure:
    """Confusion matrix of a classification or binary task: rows true, columns predicted, colour row-normalised.
    Past ``MTL_MAX_CONFUSION_CLASSES`` classes (30), the most frequent true classes and one pooled class."""
    name = task["name"]
    true, pred = predictions[f"{name}_true"], predictions[f"{name}_pred"]
    keep = _present(true) & _present(pred)
    true, pred = [class_label(v) for v in true[keep]], [class_label(v) for v in pred[keep]]
    classes = [str(c) for c in task.get("classes") or []]
    classes += sorted(set(true + pred) - set(classes))  # a stray value still shows up rather than vanishing
    classes, index, note = _top_classes(list(dict.fromkeys(classes)), true, pred, note)
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(true, pred, strict=True):
        counts[index[t], index[p]] += 1
    totals = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    n = len(classes)
    side = max(4.8, 2.6 + 0.85 * n)
    fig = figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=10,
                    color="white" if fraction[i, j] > 0.6 else "black")
    labels = [wrap(c, _LABEL_WIDTH) for c in classes]
    ax.set_xticks(range(n), labels, rotation=45 if n > 2 else 0, ha="right" if n > 2 else "center",
                  rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(n), labels, fontsize=9)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)  # white cell borders: equal neighbours stay separable
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = float(np.mean([t == p for t, p in zip(true, pred, strict=True)])) if true else float("nan")
    _title(ax, f"{name}: accuracy {accuracy:.3f} (n={counts.sum()})", note)
    fig.colorbar(image, ax=ax, shrink=0.8).set_label("fraction of the true class")
    return fig


def _with_unit(text: str, unit: str) -> str:
    return f"{text} ({unit})" if unit else text


def render_scatter(task: dict[str, Any], predictions: pd.DataFrame, note: str = "",
                   images: CaseImages | None = None) -> Figure:
    """Predicted against true values of a regression task, with the identity line, on equal axes."""
    name, unit = task["name"], task.get("unit") or ""
    true = pd.to_numeric(predictions[f"{name}_true"], errors="coerce").to_numpy(np.float64)
    pred = pd.to_numeric(predictions[f"{name}_pred"], errors="coerce").to_numpy(np.float64)
    keep = np.isfinite(true) & np.isfinite(pred)
    true, pred = true[keep], pred[keep]
    fig = figure(5.4, 5.4)
    ax = fig.add_subplot()
    if keep.any():
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    else:
        lo, hi = 0.0, 1.0
    pad = 0.05 * (hi - lo) or 1.0
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", linewidth=1, label="identity (predicted = true)")
    ax.scatter(true, pred, s=22, alpha=0.75, edgecolors="none", label="case")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(_with_unit(f"true {name}", unit))
    ax.set_ylabel(_with_unit(f"predicted {name}", unit))
    ax.legend(loc="best", fontsize=9)
    ax.grid(alpha=0.3)
    mae = float(np.mean(np.abs(pred - true))) if keep.any() else float("nan")
    _title(ax, f"{name}: MAE {mae:.4g}{' ' + unit if unit else ''} (n={int(keep.sum())})", note)
    return fig


#: figure name (a kind's ``Task.figure``, one of ``tasks.FIGURE_NAMES``) -> renderer of one task:
#: ``render(task, predictions, note, images)``; ``images`` (:class:`CaseImages` or None) is for those drawn on images
RENDERERS: dict[str, Callable[..., Figure]] = {"confusion": render_confusion, "scatter": render_scatter,
                                               "points": render_points, "roc": render_roc,
                                               "calibration": render_calibration}


def _truth_column(task: dict[str, Any]) -> str:
    """The predictions.csv column that must exist for a task's figure: ``<name>_true``, or for a kind of several
    columns named by ``axes`` (a point task) the first axis's."""
    return f"{task['axes'][0]}_true" if task.get("axes") else f"{task['name']}_true"


def _drawable(name: str, task: dict[str, Any], columns: Any) -> bool:
    """Whether predictions.csv has what figure ``name`` of ``task`` reads: the truth column, and for the figures of
    probabilities (``roc``, ``calibration``; a run folder from before them has none) the probability columns."""
    if _truth_column(task) not in columns:
        return False
    if name == "roc":
        return bool(scored_classes(task, columns))
    return name != "calibration" or f"{task['name']}_prob" in columns and bool(scored_classes(task, columns))


def _loss_label(name: str, schema: dict[str, dict[str, Any]]) -> str:
    task = schema.get(name)
    if name == "total":
        return "weighted total loss"
    cls = None if task is None else kind_class(task["kind"])
    return "loss" if task is None or cls is None else cls.loss_label(task)


def _fold_note(histories: list[dict[str, Any]]) -> str:
    return f" (fold 1 of {len(histories)})" if len(histories) > 1 else ""


def render_learning_curves(tasks: list[dict[str, Any]], histories: list[dict[str, Any]]) -> Figure:
    """Train (solid) and validation (dashed) loss per task and in total, for the first history."""
    history = histories[0]
    schema = {t["name"]: t for t in tasks}
    train, val = history.get("train", []), history.get("val", [])
    names = ["total"] + [t["name"] for t in tasks if any(t["name"] in row for row in train)]
    # At most three columns keep the page width near 1000 px, so report.html shows it without shrinking the text.
    cols = 2 if len(names) <= 4 else 3
    rows = math.ceil(len(names) / cols)
    fig = figure(3.2 * cols, 2.8 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()
    best = history.get("best_epoch")
    for k, (ax, name) in enumerate(zip(axes, names, strict=False)):  # spare axes are hidden below
        for rows_, style, label in ((train, "-", "train"), (val, "--", "validation")):
            epochs = [i + 1 for i, row in enumerate(rows_) if name in row]
            ax.plot(epochs, [row[name] for row in rows_ if name in row], linestyle=style, color="C0" if
                    label == "train" else "C1", label=label)
        if best is not None:
            ax.axvline(best + 1, color="0.3", linestyle=":", linewidth=1, label="best epoch")
        ax.set_title(wrap(name, 30), fontsize=10)
        ax.set_ylabel(_loss_label(name, schema), fontsize=9)
        if k + cols >= len(names):  # nothing below it: the bottom panel of its column carries the x axis
            ax.set_xlabel("epoch", fontsize=9)
            ax.xaxis.set_tick_params(labelbottom=True)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=9)
    fig.suptitle(f"Learning curves{_fold_note(histories)}; per-task losses unweighted", fontsize=12)
    return fig


def _constant_note(names: list[str], weights: list[dict[str, float]]) -> str:
    """Constant weights draw lines on top of each other: say so, since the legend alone would hide it."""
    values = {name: {row[name] for row in weights if name in row} for name in names}
    if not names or any(len(v) != 1 for v in values.values()):
        return ""
    distinct = {next(iter(v)) for v in values.values()}
    if len(distinct) == 1:
        return f"constant: every task weighted {distinct.pop():g} (lines coincide)"
    return "constant over training"


def render_loss_weights(tasks: list[dict[str, Any]], histories: list[dict[str, Any]]) -> Figure:
    """Each task's loss weight over the epochs of the first history."""
    weights = histories[0].get("weights", [])
    names = [t["name"] for t in tasks if any(t["name"] in row for row in weights)]
    fig = figure(7.5, 4.2)
    ax = fig.add_subplot()
    styles = ["-", "--", "-.", ":"]
    for k, name in enumerate(names):
        epochs = [i + 1 for i, row in enumerate(weights) if name in row]
        ax.plot(epochs, [row[name] for row in weights if name in row], linestyle=styles[(k // 10) % 4],
                marker="o" if len(epochs) < 30 else None, markersize=3, label=wrap(name, 20))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss weight (multiplier)")
    ax.grid(alpha=0.3)
    _title(ax, f"Loss weights over training{_fold_note(histories)}", _constant_note(names, weights))
    if names:
        fig.legend(loc="outside right upper", fontsize=9, title="task")
    return fig


def figure_plan(tasks: list[dict[str, Any]], predictions: pd.DataFrame, histories: list[dict[str, Any]],
                images: CaseImages | None = None) -> list[tuple[str, Callable[[], Figure]]]:
    """Every figure as (file stem, function drawing it), in report order."""
    cases, note = select_cases(predictions)
    plan: list[tuple[str, Callable[[], Figure]]] = []
    for name, render in RENDERERS.items():  # every confusion matrix, scatter, points, ROC, then reliability
        for task in tasks:
            cls = kind_class(task["kind"])
            if cls is not None and name in (cls.figure, *cls.extra_figures) and _drawable(name, task, cases.columns):
                plan.append((f"{name}_{_safe(task['name'])}", partial(render, task, cases, note, images)))
    if histories and histories[0].get("train"):
        plan.append(("learning_curves", partial(render_learning_curves, tasks, histories)))
    if histories and histories[0].get("weights"):
        plan.append(("loss_weights", partial(render_loss_weights, tasks, histories)))
    return plan


def render_figures(tasks: list[dict[str, Any]], predictions: pd.DataFrame, histories: list[dict[str, Any]],
                   images: CaseImages | None = None) -> list[tuple[str, Figure]]:
    """Every figure as (file stem, Figure), in report order; the caller closes nothing (no pyplot state)."""
    with plain_text():
        return [(stem, draw()) for stem, draw in figure_plan(tasks, predictions, histories, images)]


def _draw(folder: Path, stem: str, draw: Callable[[], Figure]) -> None:
    buffer = io.BytesIO()
    with plain_text():  # names and units as written: a '$' in them is not TeX
        draw().savefig(buffer, format="png", dpi=DPI)
    atomic_write(folder / f"{stem}.png", buffer.getvalue())


def _share(folder: Path, queue: list, taken: Any, done: Any) -> None:
    """Draw the next figure of ``queue`` that no process has taken yet (``taken``: a shared counter; ``done``:
    shared flags), until none is left."""
    while True:
        with taken.get_lock():
            index = taken.value
            taken.value += 1
        if index >= len(queue):
            return
        _draw(folder, *queue[index])
        done[index] = 1


def _can_fork() -> bool:
    """Whether a helper process may draw half the figures (matplotlib spends ~0.4 s per figure on a slow CPU):
    forked only (it inherits the loaded modules and the data), only on Linux (macOS system libraries do not
    survive a fork), and only with a second core."""
    import multiprocessing

    return (sys.platform == "linux" and (os.cpu_count() or 1) > 1
            and "fork" in multiprocessing.get_all_start_methods())


def write_figures(run_dir: Path, tasks: list[dict[str, Any]], predictions: pd.DataFrame,
                  histories: list[dict[str, Any]], images: CaseImages | None = None) -> list[Path]:
    """Write the run's figures as PNG into ``run_dir/figures/`` and return their paths.

    Two processes draw them where the CPU has two cores (see :func:`_can_fork`); whatever the helper process
    took and did not finish is drawn here, so a failed helper costs time, never a figure.

    Args:
        run_dir: the run folder.
        tasks: task schemas as in model.json's ``"tasks"`` (name, kind, unit, classes), and component entries
            ({"name", "kind", "unit"}); each gets the figure its kind names (looked up in the task-kind registry).
        predictions: ``id``, ``<task>_true``, ``<task>_pred`` columns (and ``fold``/``repeat`` after CV).
        histories: one ``{"train", "val", "weights", "best_epoch"}`` dict per fold; the first is plotted.
        images: the cases' images, for a point task's ``points`` figure (without them its points are drawn on a
            grey frame).

    Returns:
        Paths of the confusion matrices, scatters, points, ROC curves, reliability diagrams, learning curves and
        loss weights, in that order.

    Example:
        >>> write_figures(Path("runs/demo"), model["tasks"], pd.read_csv("runs/demo/predictions.csv"),
        ...               [history])  # doctest: +SKIP
    """
    folder = Path(run_dir) / "figures"
    plan = figure_plan(tasks, predictions, histories, images)
    folder.mkdir(parents=True, exist_ok=True)
    if len(plan) < 3 or not _can_fork():
        for stem, draw in plan:
            _draw(folder, stem, draw)
        return [folder / f"{stem}.png" for stem, _ in plan]
    import multiprocessing

    context = multiprocessing.get_context("fork")
    # the costliest first (learning curves, points on images), so that the two processes get even shares
    queue = sorted(plan, key=lambda item: not item[0].startswith(("learning_curves", "points_")))
    taken, done = context.Value("i", 0), context.Array("b", len(queue))
    helper = context.Process(target=_share, args=(folder, queue, taken, done), daemon=True)
    helper.start()
    try:
        _share(folder, queue, taken, done)
    finally:
        helper.join()
    missed = [item for item, flag in zip(queue, done, strict=True) if not flag]
    if missed:
        log.warning("the figure helper process failed (exit code %s); drawing its figures here", helper.exitcode)
        for stem, draw in missed:
            _draw(folder, stem, draw)
    return [folder / f"{stem}.png" for stem, _ in plan]
