"""Several trainings per run: (repeated, stratified) folds, aggregation with uncertainty, single-task
baselines and the multi-task gain Delta_m, and per-stratum breakdowns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data import Records, Split
from ..evaluate import BOOTSTRAP_RESAMPLES, evaluate_outputs
from ..tasks import Task, kind_class
from .run import Fitted

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


def decoded_predictions(tasks: list[Task], records: Records, fitted: Fitted) -> pd.DataFrame:
    """One row per test case (with its training's repeat and fold): each task's truth and prediction columns in its
    own terms (class names, values) and its extra output columns (such as a class probability), from
    :meth:`~mtl_core.tasks.base.Task.table_columns` and :meth:`~mtl_core.tasks.base.Task.output_columns`."""
    split = fitted.split
    test = records.subset(split.test)
    frame = pd.DataFrame({"id": test.ids, "repeat": split.repeat, "fold": split.fold})
    for task in tasks:
        out = fitted.outputs[task.name]
        truth = np.asarray(test.targets[task.name], np.float64)
        columns = task.table_columns(truth, "true")
        columns |= task.table_columns(task.decode(out) if len(out) else truth, "pred")
        columns |= task.output_columns(out) if len(out) else {}
        columns |= task.score_columns(out) if len(out) else {}
        for name, values in columns.items():
            frame[name] = values
    return frame


def run_folds(tasks: list[Task], records: Records, splits: list[Split], train: Callable[[list[Task], Split], Fitted],
              single_task: bool, say: Callable[[str], None], threshold: str = "youden") -> list[FoldResult]:
    """Train (and evaluate) the multi-task model, and optionally one single-task model per task, on each split.

    ``train(tasks, split)`` returns a :class:`Fitted`; it fits each task's normalisation on the split's training
    part, so every metric is computed right after its own training. Decision thresholds (``threshold``: the
    rule) are chosen on each split's validation part; one held-out split also gets bootstrap intervals.
    """
    results = []
    for i, split in enumerate(splits):
        if len(splits) > 1:
            say(f"fold {split.fold + 1} of repeat {split.repeat + 1} ({i + 1}/{len(splits)})")
        fitted = train(tasks, split)
        test_targets = records.subset(split.test).targets
        metrics = evaluate_outputs(tasks, fitted.outputs, test_targets, threshold=threshold,
                                   validation=(fitted.val_outputs, records.subset(split.val).targets),
                                   bootstrap=BOOTSTRAP_RESAMPLES if len(splits) == 1 else 0)
        result = FoldResult(split.repeat, split.fold, fitted, metrics, decoded_predictions(tasks, records, fitted))
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
    """Per metrics entry (each task, then its components): mean metrics over folds (``metrics``),
    ``metrics_std``, ``metrics_ci95``, per-fold values and the mean trivial baseline; ``n`` counts held-out labels
    of the first repeat (each case once). ``kind``, ``unit`` and ``part_of`` come from the entries."""
    found = list(dict.fromkeys(name for r in results for name in r.metrics))
    owner = {name: r.metrics[name].get("part_of", name) for r in results for name in r.metrics}
    order = [name for task in tasks for name in found if owner[name] == task.name]
    return {name: _aggregate_entry(name, results) for name in order + [n for n in found if n not in order]}


def _aggregate_entry(name: str, results: list[FoldResult]) -> dict[str, Any]:
    folds = [r for r in results if name in r.metrics]
    per_fold = [r.metrics[name] for r in folds]
    first = per_fold[0]
    entry: dict[str, Any] = {"kind": first["kind"], "unit": first.get("unit", "")}
    entry |= {"part_of": first["part_of"]} if "part_of" in first else {}
    entry["n"] = sum(m["n"] for r, m in zip(folds, per_fold, strict=True) if r.repeat == 0)
    for key in ("metrics", "baseline"):
        names = per_fold[0][key].keys()
        stats = {k: summarise([m[key][k] for m in per_fold]) for k in names}
        entry[key] = {k: s[0] for k, s in stats.items()}
        if key == "metrics":
            entry["metrics_std"] = {k: s[1] for k, s in stats.items()}
            entry["metrics_ci95"] = {k: s[2] for k, s in stats.items()}
            entry["folds"] = {k: [m[key][k] for m in per_fold] for k in names}
    entry |= _scored_keys(name, folds)
    if folds and name in folds[0].single_task:
        entry["single_task"] = {k: summarise([r.single_task[name][k] for r in folds])[0]
                                for k in folds[0].single_task[name]}
    return entry


def _scored_keys(name: str, folds: list[FoldResult]) -> dict[str, Any]:
    """What an entry of scores carries beside its metrics: the thresholds of every training, the reason of each
    metric undefined in every training, and the bootstrap intervals of a single held-out split."""
    per_fold = [r.metrics[name] for r in folds]
    if "threshold" not in per_fold[0]:
        return {}
    out: dict[str, Any] = {"threshold": {"rule": per_fold[0]["threshold"]["rule"],
                                         "values": [m["threshold"]["values"] for m in per_fold]}}
    reasons = {k: why for m in reversed(per_fold) for k, why in m.get("undefined", {}).items()}
    undefined = {k: why for k, why in reasons.items() if all(k in m.get("undefined", {}) for m in per_fold)}
    out |= {"undefined": undefined} if undefined else {}
    out |= {"bootstrap_ci95": per_fold[0]["bootstrap_ci95"]} if len(per_fold) == 1 and "bootstrap_ci95" in \
        per_fold[0] else {}
    return out


def _delta_metrics(entry: dict[str, Any]) -> dict[str, bool]:
    """The metrics of ``entry`` entering Delta_m with their direction: those of :data:`DELTA_METRICS` it has, else
    its kind's summary metrics."""
    known = {k: v for k, v in DELTA_METRICS.items() if k in entry["metrics"]}
    cls = kind_class(entry["kind"])
    if known or cls is None:
        return known
    return {k: cls.higher_is_better[k] for k in cls.summary_metrics}


def delta_m(task_metrics: dict[str, Any]) -> float | None:
    """Multi-task gain (Maninis et al. 2019; Vandenhende et al. 2021), in percent: the mean over tasks of the
    mean relative improvement of each metric over the single-task model, signed by the metric's direction.
    A component entry (``part_of``) without a single-task value is left out; any other such entry makes it
    undefined."""
    per_task = []
    for entry in task_metrics.values():
        single = entry.get("single_task")
        if not single:
            if "part_of" in entry:
                continue
            return None
        gains = []
        for metric, higher in _delta_metrics(entry).items():
            mt, st = entry["metrics"].get(metric), single.get(metric)
            if mt is None or st is None or math.isnan(mt) or math.isnan(st) or st == 0:
                continue
            gains.append((mt - st) / abs(st) * (1 if higher else -1))
        if gains:
            per_task.append(float(np.mean(gains)))
    return 100.0 * float(np.mean(per_task)) if per_task else None


def strata_breakdown(tasks: list[Task], records: Records, predictions: pd.DataFrame) -> dict[str, Any]:
    """Every task's (and component's) metrics per value of every stratum (first repeat's out-of-fold
    predictions), with counts."""
    first = predictions[predictions["repeat"] == 0]
    index = {case_id: i for i, case_id in enumerate(records.ids)}
    rows = np.array([index[c] for c in first["id"]], dtype=int)
    out: dict[str, Any] = {}
    for name, values in records.strata.items():
        labels = np.asarray(values)[rows].astype(str)
        out[name] = {}
        for value in sorted(set(labels) - {""}):
            keep = labels == value
            out[name][value] = {k: v for t in tasks
                                for k, v in _stratum_scores(t, first[keep], records, rows[keep]).items()}
    return out


def _stratum_scores(task: Task, frame: pd.DataFrame, records: Records, rows: np.ndarray) -> dict[str, Any]:
    truth = np.asarray(records.targets[task.name], np.float64)[rows]
    pred = task.from_table(frame, "pred")
    labelled = task.labelled(truth)
    scores = task.score(truth[labelled], pred[labelled]) if labelled.any() else {}
    out = {task.name: {"n": int(labelled.sum()), "metrics": scores}}
    for name, entry in task.components(truth, pred).items():
        out[name] = {"n": entry["n"], "metrics": entry["metrics"] if entry["n"] else {}}
    return out
