"""Evaluation of raw head outputs against targets, for library use."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MTLError
from ..tasks import Task
from .bootstrap import bootstrap_ci95

#: raw head outputs and raw targets of the validation part, as ``outputs`` and ``targets`` of evaluate_outputs
Validation = tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]


def evaluate_outputs(tasks: list[Task], outputs: dict[str, torch.Tensor], targets: dict[str, np.ndarray], *,
                     validation: Validation | None = None, threshold: str = "youden",
                     bootstrap: int = 0) -> dict[str, dict[str, Any]]:
    """Per-task metrics and trivial baselines: {entry: {"kind", "unit", "n", "metrics", "baseline", ...}}.

    Every task gives its own entry, followed by the entries of its :meth:`~mtl_core.tasks.base.Task.components` (which
    carry ``"part_of"``: the task's name). A task with scores (:meth:`~mtl_core.tasks.base.Task.output_scores`, a
    class task's probabilities) also gets ROC AUC, PR AUC, ECE and sensitivity and specificity at thresholds chosen
    on ``validation`` (``"threshold"``: the rule and the values), with ``"undefined"``: the reason of each NaN.

    Args:
        tasks: fitted tasks (``Task.fit`` called on the training labels).
        outputs: raw head outputs {task: (N, ...)}.
        targets: raw targets {task: (N,) or (N, k)} with NaN for missing labels (never counted).
        validation: outputs and targets of the validation part, where decision thresholds are chosen; without
            it sensitivity and specificity are NaN.
        threshold: the rule choosing them (``evaluation.threshold``): ``youden`` or ``sensitivity:S``.
        bootstrap: resamples of the labelled cases for percentile 95 % intervals of each task's metrics
            (``"bootstrap_ci95"``); 0: none.
    """
    names = {t.name for t in tasks}
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        values = np.asarray(targets[task.name], np.float64)
        prediction = task.decode(outputs[task.name])
        out[task.name] = task.evaluate(values, prediction)
        out[task.name] |= _scored(task, values, prediction, outputs[task.name], validation, threshold, bootstrap,
                                  out[task.name])
        for name, entry in task.components(values, prediction).items():
            if name in names or name in out:
                raise MTLError(f"task {task.name!r} reports an entry {name!r}, which another task or entry already "
                               f"has; rename the task or the component")
            out[name] = entry
    return out


def _thresholds(task: Task, output: torch.Tensor, validation: Validation | None,
                rule: str) -> tuple[list[float | None], str]:
    if validation is None or task.name not in validation[0]:
        chosen, _ = task.choose_thresholds(np.zeros(0), task.output_scores(output[:0]), rule)
        return chosen, "no validation part to choose the decision threshold on"
    values = np.asarray(validation[1][task.name], np.float64)
    labelled = task.labelled(values)
    return task.choose_thresholds(values[labelled], task.output_scores(validation[0][task.name])[labelled], rule)


def _scored(task: Task, values: np.ndarray, prediction: np.ndarray, output: torch.Tensor,
            validation: Validation | None, rule: str, bootstrap: int, entry: dict[str, Any]) -> dict[str, Any]:
    """The metrics of the task's scores added to ``entry``, and what goes beside them: the thresholds, the reasons
    of NaN values, the bootstrap intervals."""
    labelled = task.labelled(values)
    truth, pred = values[labelled], np.asarray(prediction)[labelled]
    scores = task.output_scores(output)
    extra: dict[str, Any] = {}
    chosen: list[float | None] | None = None
    if scores is not None:
        scores = scores[labelled]
        chosen, why = _thresholds(task, output, validation, rule)
        found, reasons = task.score_outputs(truth, scores, chosen)
        if why:
            reasons |= {k: why for k in ("sensitivity", "specificity") if k in reasons}
        entry["metrics"] |= found
        baseline_scores = task.baseline_scores(len(truth))
        if baseline_scores is not None:
            entry["baseline"] |= task.score_outputs(truth, baseline_scores, None)[0]
        extra["threshold"] = {"rule": rule, "values": chosen}
        extra |= {"undefined": reasons} if reasons else {}
    if bootstrap:
        def score(rows: np.ndarray) -> dict[str, float]:
            found = task.score(truth[rows], pred[rows])
            return found | (task.score_outputs(truth[rows], scores[rows], chosen)[0] if scores is not None else {})

        extra["bootstrap_ci95"] = bootstrap_ci95(score, len(truth), bootstrap)
    return extra


__all__ = ["Validation", "evaluate_outputs"]
