"""What an exported graph outputs per task kind, decoded inside the graph, and how a consumer reads it.

Each built-in kind has a :class:`KindExport`: ``outputs`` turns the head's raw output into decoded tensors with
torch operations that an ONNX exporter can trace (probabilities, values in the task's units, points in frame
units), ``describe`` writes the task's entry of the graph's metadata (names, kind, classes, units, what each
output holds and how to decode it), and ``columns`` turns the decoded arrays back into the columns of
``mtl predict``'s table from that metadata alone (no :class:`~mtl_core.tasks.Task` object). A kind that a plugin
adds is exported once it registers a :class:`KindExport` under its kind with :func:`register_kind_export`; until
then :func:`kind_export` refuses it, naming the task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import RunError
from ..registry import Registry
from ..tasks import BinaryTask, ClassificationTask, PointTask, RegressionTask, Task
from ..tasks import heatmap as H


class ExportError(RunError):
    """A run holds something the exported graph cannot express; the message names the part."""


Columns = tuple[dict[str, np.ndarray | list], dict[str, str]]


@dataclass(frozen=True)
class KindExport:
    """How one task kind is exported.

    Attributes:
        base: the task class whose ``decode`` the graph reproduces (a subclass that overrides ``decode`` is refused).
        outputs: (task, head output) -> {output suffix: decoded tensor}; the graph names them ``<task>.<suffix>``.
        describe: task -> its metadata entry (JSON-able; ``name``, ``kind``, ``outputs`` are added for it).
        columns: (metadata entry, {suffix: array}) -> (table columns, their units), as ``mtl predict`` shows them.
    """

    base: type[Task]
    outputs: Callable[[Any, torch.Tensor], dict[str, torch.Tensor]]
    describe: Callable[[Any], dict[str, Any]]
    columns: Callable[[dict[str, Any], dict[str, np.ndarray]], Columns]


KIND_EXPORTS: Registry[KindExport] = Registry("exportable task kind", ExportError)


def register_kind_export(kind: str, export: KindExport, *, replace: bool = False) -> None:
    """Make task kind ``kind`` exportable (a plugin's own kind)."""
    KIND_EXPORTS.register(kind, replace=replace)(export)


def kind_export(task: Task) -> KindExport:
    """The export of ``task``'s kind, refused with one line when the graph cannot reproduce its decoding."""
    if task.kind not in KIND_EXPORTS:
        raise ExportError(f"task {task.name!r} is of kind {task.kind!r}, which has no ONNX export (exportable: "
                          f"{', '.join(sorted(KIND_EXPORTS.names()))}); register one with register_kind_export")
    export = KIND_EXPORTS.get(task.kind)
    if not isinstance(task, export.base) or type(task).decode is not export.base.decode:
        raise ExportError(f"task {task.name!r} ({type(task).__name__}) decodes its outputs its own way; the ONNX "
                          f"export of kind {task.kind!r} reproduces {export.base.__name__}.decode only")
    return export


# -- classes -----------------------------------------------------------------------------------------------------

def _class_describe(task: Any) -> dict[str, Any]:
    return {"classes": list(task.classes), "unit": "",
            "decoding": "the predicted class is classes[argmax(probabilities)]; its probability is the maximum",
            "output_shapes": {"probabilities": ["batch", len(task.classes)]}}


def _class_columns(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Columns:
    probs = np.asarray(arrays["probabilities"], np.float64)
    name, classes = entry["name"], entry["classes"]
    best = probs.argmax(axis=1)
    return ({name: [classes[int(i)] for i in best], f"{name}_prob": np.round(probs.max(axis=1), 4)},
            {name: "class", f"{name}_prob": "probability"})


def _softmax(task: Any, out: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"probabilities": torch.softmax(out.float(), dim=1)}  # (B, K)


def _sigmoid(task: Any, out: torch.Tensor) -> dict[str, torch.Tensor]:
    p = torch.sigmoid(out.float().reshape(-1, 1))  # (B, 1)
    return {"probabilities": torch.cat([1 - p, p], dim=1)}  # (B, 2): negative, positive


# -- regression --------------------------------------------------------------------------------------------------

def _regression(task: RegressionTask, out: torch.Tensor) -> dict[str, torch.Tensor]:
    value = out.float().reshape(-1) * task._scale + task._offset  # (B,) in the target's units
    low, high = task.bounds
    if low is not None or high is not None:
        value = value.clamp(min=None if low is None else float(low), max=None if high is None else float(high))
    return {"value": value}


def _regression_describe(task: RegressionTask) -> dict[str, Any]:
    return {"unit": task.unit, "bounds": list(task.bounds), "output_shapes": {"value": ["batch"]},
            "decoding": "value is already in the unit (the training normalisation is undone, bounds applied)"}


def _regression_columns(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Columns:
    name = entry["name"]
    return {name: np.asarray(arrays["value"], np.float64)}, {name: entry["unit"]}


# -- points ------------------------------------------------------------------------------------------------------

def _point(task: PointTask, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """:meth:`PointTask.decode` in traceable torch: the (local) soft-argmax point in frame units, the extent read
    there and shrunk towards the training mean by the presence probability, and the presence itself."""
    logits = out[:, 1]
    found, probabilities = H.soft_argmax(logits) if task.decode_radius is None else \
        H.local_soft_argmax(logits, task.decode_radius)
    presence = torch.sigmoid(out[:, 0].float().flatten(1).max(dim=1).values)  # (B,)
    columns = [found[:, 0] * task.frame[0], found[:, 1] * task.frame[1]]
    if task.extent is not None:
        read = H.expected_extent(out[:, 2], probabilities)
        columns.append((presence * read * task._extent_std + task._extent_mean).clamp(min=0.0))
    return {"point": torch.stack(columns, dim=1), "presence": presence, "heatmap": torch.sigmoid(out[:, 0].float())}


def _point_describe(task: PointTask) -> dict[str, Any]:
    names = [*task.axes] + ([task.extent] if task.extent is not None else [])
    units = [task.unit, task.unit] + ([task.extent_unit] if task.extent is not None else [])
    return {"unit": task.unit, "frame": list(task.frame), "components": names, "component_units": units,
            "output_shapes": {"point": ["batch", len(names)], "presence": ["batch"],
                              "heatmap": ["batch", "map", "map"]},
            "decoding": "point holds the components in frame units (origin top-left, x right, y down); presence is "
                        "the probability that there is a point at all; heatmap the per-cell presence probability"}


def _point_columns(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Columns:
    point = np.asarray(arrays["point"], np.float64)
    columns: dict[str, Any] = {c: point[:, i] for i, c in enumerate(entry["components"])}
    units = dict(zip(entry["components"], entry["component_units"], strict=True))
    columns[f"{entry['name']}_presence"] = np.round(np.asarray(arrays["presence"], np.float64), 4)
    return columns, units | {f"{entry['name']}_presence": "probability"}


register_kind_export("classification", KindExport(ClassificationTask, _softmax, _class_describe, _class_columns))
register_kind_export("binary", KindExport(BinaryTask, _sigmoid, _class_describe, _class_columns))
register_kind_export("regression", KindExport(RegressionTask, _regression, _regression_describe, _regression_columns))
register_kind_export("point", KindExport(PointTask, _point, _point_describe, _point_columns))
