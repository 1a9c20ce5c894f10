"""Several trainings per run: (repeated, stratified) folds, aggregation with uncertainty, single-task
baselines and the multi-task gain Delta_m, and per-stratum breakdowns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .data import Records
from .run import Fitted
from .tasks import BinaryTask, ClassificationTask, Task

#: metrics entering Delta_m, with their direction (True: higher is better)
DELTA_METRICS = {"accuracy": True, "f1_macro": True, "mse": False, "mae": False}


@dataclass
class FoldResult:
    """One training: its split, metrics per task, decoded test predictions and history."""

    repeat: int
    fold: int
    fitted: Fitted
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    single_task: dict[str, dict[str, float]] = field(default_factory=dict)


def _names(task: Task, values: np.ndarray) -> list[Any]:
    if isinstance(task, ClassificationTask | BinaryTask):
        return ["" if np.isnan(v) else task.classes[int(v)] for v in values]
    return [None if np.isnan(v) else float(v) for v in values]


def decoded_predictions(tasks: list[Task], records: Records, fitted: Fitted, repeat: int, fold: int) -> pd.DataFrame:
    """One row per test case: truth and prediction (class name or value) and class probability per task."""
    test = records.subset(fitted.split["test"])
    frame = pd.DataFrame({"id": test.ids, "repeat": repeat, "fold": fold})
    for task in tasks:
        out = fitted.outputs[task.name]
        frame[f"{task.name}_true"] = _names(task, np.asarray(test.targets[task.name], np.float64))
        frame[f"{task.name}_pred"] = _names(task, task.decode(out)) if len(out) else []
        if isinstance(task, ClassificationTask | BinaryTask):
            frame[f"{task.name}_prob"] = np.round(task.probabilities(out).max(axis=1), 4) if len(out) else []
    return frame


def run_folds(tasks: list[Task], records: Records, splits: list[dict], train: Callable[..., Fitted],
              single_task: bool, say: Callable[[str], None]) -> list[FoldResult]:
    """Train (and evaluate) the multi-task model, and optionally one single-task model per task, on each split.

    ``train(tasks, split)`` returns a :class:`Fitted`; it fits each task's normalisation on the split's training
    part, so every metric is computed right after its own training.
    """
    from .evaluation import evaluate_outputs

    results = []
    for i, split in enumerate(splits):
        if len(splits) > 1:
            say(f"fold {split['fold'] + 1} of repeat {split['repeat'] + 1} ({i + 1}/{len(splits)})")
        fitted = train(tasks, split)
        test_targets = records.subset(split["test"]).targets
        metrics = evaluate_outputs(tasks, fitted.outputs, test_targets)
        result = FoldResult(split["repeat"], split["fold"], fitted, metrics,
                            decoded_predictions(tasks, records, fitted, split["repeat"], split["fold"]))
        if single_task:
            for task in tasks:  # same split, same features, same trunk: one task at a time
                alone = train([task], split)
                result.single_task[task.name] = evaluate_outputs([task], alone.outputs,
                                                                 test_targets)[task.name]["metrics"]
        results.append(result)
    return results


def t_quantile(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def summarise(values: list[float]) -> tuple[float, float, list[float]]:
    """Mean, sample standard deviation and a t-based 95% interval of per-fold values (NaN values ignored)."""
    arr = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(arr) == 0:
        return float("nan"), float("nan"), [float("nan"), float("nan")]
    mean = float(arr.mean())
    if len(arr) == 1:
        return mean, 0.0, [mean, mean]
    std = float(arr.std(ddof=1))
    half = t_quantile(len(arr) - 1) * std / math.sqrt(len(arr))
    return mean, std, [mean - half, mean + half]


def aggregate(tasks: list[Task], results: list[FoldResult]) -> dict[str, Any]:
    """Per task: mean metrics over folds (``metrics``), ``metrics_std``, ``metrics_ci95``, per-fold values and
    the mean trivial baseline; ``n`` counts held-out labels of the first repeat (each case once)."""
    out = {}
    for task in tasks:
        per_fold = [r.metrics[task.name] for r in results]
        entry: dict[str, Any] = {"kind": task.kind, "unit": task.unit,
                                 "n": sum(m["n"] for r, m in zip(results, per_fold, strict=True) if r.repeat == 0)}
        for key in ("metrics", "baseline"):
            names = per_fold[0][key].keys()
            stats = {k: summarise([m[key][k] for m in per_fold]) for k in names}
            entry[key] = {k: s[0] for k, s in stats.items()}
            if key == "metrics":
                entry["metrics_std"] = {k: s[1] for k, s in stats.items()}
                entry["metrics_ci95"] = {k: s[2] for k, s in stats.items()}
                entry["folds"] = {k: [m[key][k] for m in per_fold] for k in names}
        if results and results[0].single_task:
            entry["single_task"] = {k: summarise([r.single_task[task.name][k] for r in results])[0]
                                    for k in results[0].single_task[task.name]}
        out[task.name] = entry
    return out


def delta_m(task_metrics: dict[str, Any]) -> float | None:
    """Multi-task gain (Maninis et al. 2019; Vandenhende et al. 2021), in percent: the mean over tasks of the
    mean relative improvement of each metric over the single-task model, signed by the metric's direction."""
    per_task = []
    for entry in task_metrics.values():
        single = entry.get("single_task")
        if not single:
            return None
        gains = []
        for metric, higher in DELTA_METRICS.items():
            mt, st = entry["metrics"].get(metric), single.get(metric)
            if mt is None or st is None or math.isnan(mt) or math.isnan(st) or st == 0:
                continue
            gains.append((mt - st) / abs(st) * (1 if higher else -1))
        if gains:
            per_task.append(float(np.mean(gains)))
    return 100.0 * float(np.mean(per_task)) if per_task else None


def strata_breakdown(tasks: list[Task], records: Records, predictions: pd.DataFrame) -> dict[str, Any]:
    """Every task's metrics per value of every stratum (first repeat's out-of-fold predictions), with counts."""
    first = predictions[predictions["repeat"] == 0]
    index = {case_id: i for i, case_id in enumerate(records.ids)}
    rows = np.array([index[c] for c in first["id"]], dtype=int)
    out: dict[str, Any] = {}
    for name, values in records.strata.items():
        labels = np.asarray(values)[rows].astype(str)
        out[name] = {}
        for value in sorted(set(labels) - {""}):
            keep = labels == value
            out[name][value] = {t.name: _stratum_scores(t, first[keep], records, rows[keep]) for t in tasks}
    return out


def _stratum_scores(task: Task, frame: pd.DataFrame, records: Records, rows: np.ndarray) -> dict[str, Any]:
    truth = np.asarray(records.targets[task.name], np.float64)[rows]
    labelled = ~np.isnan(truth)
    if isinstance(task, ClassificationTask | BinaryTask):
        lookup = {c: i for i, c in enumerate(task.classes)}
        pred = np.array([lookup.get(p, -1) for p in frame[f"{task.name}_pred"]], dtype=np.float64)
    else:
        pred = frame[f"{task.name}_pred"].to_numpy(np.float64)
    scores = task.score(truth[labelled], pred[labelled]) if labelled.any() else {}
    return {"n": int(labelled.sum()), "metrics": scores}
