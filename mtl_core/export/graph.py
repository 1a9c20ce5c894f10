"""One ONNX graph from an image tensor to every task's decoded output, with the image contract and the task
schema in its metadata (``mtl export``).

The graph reads ``image`` (batch, channels, size, size), float32 in [0, 1] -- the image as the run's reader gives
it (grey levels scaled by the bit depth's maximum) resized to the run's image size -- and runs the backbones (with
their resizing, channel expansion and normalisation), the feature standardisation, the trunk, the heads and the
decoding of every task (:mod:`mtl_core.export.outputs`). Its outputs are ``<task>.<output>`` (``shape.probabilities``,
``size.value``, ``nodule.point``), and ``out_of_distribution_score`` when the run has a distance check. The batch
axis is dynamic.

The graph is written by PyTorch's TorchScript-based exporter (``dynamo=False``): it needs nothing beyond torch and
``onnx`` and works offline; the ``torch.export`` path needs ``onnxscript`` and, on timm models with a dynamic
batch, fails more often than it helps. The exported file is checked with ``onnx.checker`` before it is renamed
into place.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write
from ..model import MultiTaskModel
from ..tasks import Task
from .outputs import ExportError, kind_export

log = logging.getLogger(__name__)

#: the metadata format this module writes (``mtl.format`` in the graph's metadata)
ONNX_FORMAT = "mtl-onnx/1"
OPSET = 18
IMAGE_INPUT = "image"
OOD_OUTPUT = "out_of_distribution_score"


@dataclass(frozen=True)
class DistanceReference:
    """A run's out-of-distribution check (:class:`~mtl_core.evaluate.DistanceCheck`) as tensors a graph holds."""

    reference: torch.Tensor  # (M, F) training embeddings
    k: int
    threshold: float


class ExportGraph(nn.Module):
    """A trained model with its decoding, as one module whose outputs are a flat tuple (the graph's outputs).

    Example:
        >>> from mtl_core import BackboneFusion, RegressionTask, create_model
        >>> fusion = BackboneFusion(["test_resnet"], weights="random", image_size=32)
        >>> task = RegressionTask("size")
        >>> graph = ExportGraph(create_model(fusion, [task], {"hidden": 8}).eval(), [task])
        >>> graph.output_names, graph(torch.rand(2, 1, 32, 32))[0].shape
        (['size.value'], torch.Size([2]))
    """

    def __init__(self, model: MultiTaskModel, tasks: list[Task], distance: DistanceReference | None = None) -> None:
        super().__init__()
        if model.fusion is None:
            raise ExportError("the model has no backbones attached; export needs them (build it with attach=True)")
        self.model, self.tasks = model, list(tasks)
        self.exports = {t.name: kind_export(t) for t in self.tasks}
        self.distance = distance
        if distance is not None:
            self.register_buffer("reference", distance.reference.float())
        self.output_names = self._names()

    def _names(self) -> list[str]:
        names = []
        for task in self.tasks:
            probe = self.exports[task.name].describe(task)["output_shapes"]
            names += [f"{task.name}.{suffix}" for suffix in probe]
        return names + ([OOD_OUTPUT] if self.distance is not None else [])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Images (B, C, S, S) in [0, 1] -> the decoded outputs, in the order of :attr:`output_names`."""
        features = self.model.fusion(image)
        raw = self.model.forward_features(features)
        out: list[torch.Tensor] = []
        for task in self.tasks:
            decoded = self.exports[task.name].outputs(task, raw[task.name])
            out += [decoded[s] for s in self.exports[task.name].describe(task)["output_shapes"]]
        if self.distance is not None:
            out.append(self._distance_score(self.model.embedding(features)))
        return tuple(out)

    def _distance_score(self, embedding: torch.Tensor) -> torch.Tensor:
        """Mean distance to the ``k`` nearest training embeddings over the threshold (B,), as the check computes
        it (expanded squares: no (B, M, F) difference tensor)."""
        q, r = embedding.float(), self.reference
        squares = (q * q).sum(1, keepdim=True) - 2 * q @ r.T + (r * r).sum(1).unsqueeze(0)  # (B, M)
        nearest = torch.topk(squares.clamp(min=0.0), self.distance.k, dim=1, largest=False).values
        return nearest.sqrt().mean(dim=1) / self.distance.threshold


def task_entries(tasks: list[Task]) -> list[dict[str, Any]]:
    """The ``mtl.tasks`` metadata: per task its name, kind, outputs (graph name -> shape), classes or units and
    how to decode them."""
    entries = []
    for task in tasks:
        entry = kind_export(task).describe(task)
        shapes = entry.pop("output_shapes")
        entries.append({"name": task.name, "kind": task.kind,
                        "outputs": {f"{task.name}.{s}": shape for s, shape in shapes.items()}} | entry)
    return entries


def image_contract(model: MultiTaskModel, image_size: int, reader: str) -> dict[str, Any]:
    """The ``mtl.image`` metadata: what the graph's input must hold."""
    return {
        "input": IMAGE_INPUT, "layout": "NCHW", "dtype": "float32", "size": [image_size, image_size],
        "channels": "1 (grey) or 3; a grey image is repeated into 3 channels inside the graph", "range": [0.0, 1.0],
        "bit_depth": "integers divided by their bit depth's maximum: 8-bit by 255, 16-bit by 65535 (by 4095 when "
                     "the largest value is at most 4095: 12-bit data); colour images become luminance (ITU-R "
                     "BT.601); floats already in [0, 1] are kept",
        "resize": f"bilinear with antialiasing to {image_size} x {image_size} before the graph",
        "reader": reader,
        "normalisation": "inside the graph, per backbone: " + "; ".join(
            f"{i.name}: mean {list(i.mean)}, std {list(i.std)} at {i.input_size} px" for i in model.fusion.infos),
    }


def export_onnx(model: MultiTaskModel, tasks: list[Task], path: Path, *, image_size: int, reader: str = "core",
                distance: DistanceReference | None = None, extra: dict[str, str] | None = None) -> Path:
    """Write ``model`` (eval mode) and its decoding as one ONNX graph at ``path`` (atomically), with the image
    contract (``mtl.image``), the task schema (``mtl.tasks``) and ``extra`` in its metadata.

    Raises:
        ExportError: a task kind or a part of the model that the graph cannot express, named.
    """
    graph = ExportGraph(model.eval(), tasks, distance).eval()
    metadata = {"mtl.format": ONNX_FORMAT, "mtl.image": json.dumps(image_contract(model, image_size, reader)),
                "mtl.tasks": json.dumps(task_entries(tasks)), "mtl.outputs": json.dumps(graph.output_names)}
    metadata |= extra or {}
    proto = _trace(graph, image_size)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    import onnx  # lazy: an optional dependency, needed only here

    onnx.checker.check_model(proto)
    atomic_write(Path(path), proto.SerializeToString())
    return Path(path)


def _trace(graph: ExportGraph, image_size: int):
    """The ONNX model proto of ``graph`` traced on a blank batch of two, with a dynamic batch axis."""
    import onnx  # lazy: an optional dependency, needed only here

    example = torch.zeros(2, 1, image_size, image_size)
    buffer = io.BytesIO()
    dynamic = {IMAGE_INPUT: {0: "batch"}} | {name: {0: "batch"} for name in graph.output_names}
    try:
        with torch.no_grad(), _quiet():
            torch.onnx.export(graph, (example,), buffer, input_names=[IMAGE_INPUT], output_names=graph.output_names,
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - the exporter's failures name an operator: one line
        part = _failing_part(graph)
        raise ExportError(f"cannot express {part} in ONNX ({type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0][:200]})") from None
    return onnx.load_from_string(buffer.getvalue())


def _failing_part(graph: ExportGraph) -> str:
    """Which part of the model a failed export stumbled on, found by tracing the parts alone."""
    for backbone in graph.model.fusion.backbones:
        try:
            with torch.no_grad(), _quiet():
                torch.onnx.export(backbone, (torch.zeros(1, 3, backbone.info.input_size, backbone.info.input_size),),
                                  io.BytesIO(), opset_version=OPSET, dynamo=False)
        except Exception:  # noqa: BLE001
            return f"backbone {backbone.info.name!r}"
    return "the trunk, heads or decoding of tasks " + ", ".join(repr(t.name) for t in graph.tasks)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's tracing warnings (constant shapes are what a fixed image size means)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
