"""Evaluation of raw head outputs against targets, for library use."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .tasks import Task


def evaluate_outputs(tasks: list[Task], outputs: dict[str, torch.Tensor],
                     targets: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per-task metrics and trivial baselines: {task: {"kind", "n", "metrics", "baseline"}}.

    Args:
        tasks: fitted tasks (``Task.fit`` called on the training labels).
        outputs: raw head outputs {task: (N, K)}.
        targets: raw targets {task: (N,)} with NaN for missing labels (never counted).
    """
    return {t.name: t.evaluate(np.asarray(targets[t.name], np.float64), t.decode(outputs[t.name])) for t in tasks}
