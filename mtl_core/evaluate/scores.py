"""Evaluation of raw head outputs against targets, for library use."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MTLError
from ..tasks import Task


def evaluate_outputs(tasks: list[Task], outputs: dict[str, torch.Tensor],
                     targets: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per-task metrics and trivial baselines: {entry: {"kind", "unit", "n", "metrics", "baseline"}}.

    Every task gives its own entry, followed by the entries of its :meth:`~mtl_core.tasks.base.Task.components` (which
    carry ``"part_of"``: the task's name).

    Args:
        tasks: fitted tasks (``Task.fit`` called on the training labels).
        outputs: raw head outputs {task: (N, ...)}.
        targets: raw targets {task: (N,) or (N, k)} with NaN for missing labels (never counted).
    """
    names = {t.name for t in tasks}
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        values = np.asarray(targets[task.name], np.float64)
        prediction = task.decode(outputs[task.name])
        out[task.name] = task.evaluate(values, prediction)
        for name, entry in task.components(values, prediction).items():
            if name in names or name in out:
                raise MTLError(f"task {task.name!r} reports an entry {name!r}, which another task or entry already "
                               f"has; rename the task or the component")
            out[name] = entry
    return out
