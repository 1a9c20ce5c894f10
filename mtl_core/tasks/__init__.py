"""Tasks: what is predicted, with its head, loss, decoding and metrics; the registry of task kinds."""

from __future__ import annotations

from .base import (
    FIGURE_NAMES,
    TASK_KINDS,
    Task,
    TaskSchema,
    format_target,
    kind_class,
    masked_mean,
    register_task_kind,
    task_from_schema,
)
from .kinds import BinaryTask, ClassificationTask, ClassTask, RegressionTask
from .point import PointTask

__all__ = [
    "BinaryTask", "ClassTask", "ClassificationTask", "FIGURE_NAMES", "PointTask", "RegressionTask", "TASK_KINDS",
    "Task", "TaskSchema", "format_target", "kind_class", "masked_mean", "register_task_kind", "task_from_schema"
]
