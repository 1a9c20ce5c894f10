"""Where a model looked: a saliency map per image and task.

A global task (classification, binary, regression) gets Grad-CAM (Selvaraju et al. 2017) or Grad-CAM++
(Chattopadhay et al. 2018) from :mod:`monai.visualize` on the last feature map of each backbone, for the score
of one class (the predicted one unless asked) or of the regressed value; the maps of the backbones, each scaled
to [0, 1], are averaged (the fusion's view). A point task shows its own heatmap: the per-cell presence
probability, brought to the image's size.

Frozen backbones take part too: their weights stay fixed, only the gradient with respect to their activations is
read (the image is made to require a gradient so that it flows through them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RunError
from ..features import Backbone
from ..model import MultiTaskModel
from ..registry import suggest
from ..tasks import BinaryTask, ClassTask, PointTask, Task

METHODS = ("gradcam", "gradcampp")


class ExplainError(RunError):
    """A saliency map that cannot be made (an unknown task or class, a backbone without a feature map)."""


@dataclass(frozen=True)
class Saliency:
    """One image's map for one task.

    Attributes:
        task: the task's name.
        target: what the map explains: a class name, "value" (regression) or "heatmap" (a point task).
        map: (H, W) float32 in [0, 1], at the input image's size.
        method: "gradcam", "gradcampp" or "heatmap".
    """

    task: str
    target: str
    map: np.ndarray
    method: str


class _TaskScores(nn.Module):
    """Images -> the scores one task's map explains (B, K): class logits (a binary task's as [-z, z], so class
    indices match its class names), or the regressed value (B, 1)."""

    def __init__(self, model: MultiTaskModel, task: Task) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)[self.task.name].float()
        if isinstance(self.task, BinaryTask):
            z = out.reshape(-1, 1)
            return torch.cat([-z, z], dim=1)  # (B, 2)
        return out.reshape(len(images), -1)  # (B, K) or (B, 1)


def feature_layer(backbone: Backbone) -> str:
    """The name (inside the backbone's network) of the module whose output is its last feature map."""
    net = backbone.model
    info = getattr(net, "feature_info", None)
    if info is not None and len(info):
        return str(info[-1]["module"])
    names = dict(net.named_modules())
    for name in ("stages", "features", "layer4"):
        if name in names:
            module = names[name]
            return f"{name}.{len(module) - 1}" if name == "stages" and isinstance(module, nn.Sequential) else name
    raise ExplainError(f"backbone {backbone.info.name!r} ({type(net).__name__}) names no last feature map that "
                       f"Grad-CAM could read; use a timm backbone")


def find_task(tasks: list[Task], name: str) -> Task:
    """The task called ``name``, or one line with the close names."""
    for task in tasks:
        if task.name == name:
            return task
    raise ExplainError(suggest(name, [t.name for t in tasks], "task"))


def class_index(task: Task, wanted: str | None) -> int | None:
    """The index of class ``wanted`` (a name or a number) of a class task; None: the predicted class."""
    if wanted is None:
        return None
    if not isinstance(task, ClassTask):
        raise ExplainError(f"task {task.name!r} is a {task.kind} task without classes; leave out --class")
    if wanted in task.classes:
        return task.classes.index(wanted)
    if wanted.isdigit() and int(wanted) < len(task.classes):
        return int(wanted)
    raise ExplainError(suggest(wanted, list(task.classes), f"class of task {task.name!r}"))


def saliency(model: MultiTaskModel, task: Task, image: torch.Tensor, wanted: str | None = None,
             method: str = "gradcam") -> Saliency:
    """The map of ``task`` for one image (1, C, S, S) in [0, 1] (see the module docstring).

    Raises:
        ExplainError: an unknown method or class, or a backbone without a feature map.
    """
    return saliency_maps(model, task, image, wanted, method)[0]


def saliency_maps(model: MultiTaskModel, task: Task, images: torch.Tensor, wanted: str | None = None,
                  method: str = "gradcam") -> list[Saliency]:
    """The maps of ``task`` for a batch (B, C, S, S) in [0, 1]: one pass per backbone for all the images that
    explain the same class (MONAI's CAM scores one class index per call).

    Raises:
        ExplainError: an unknown method or class, or a backbone without a feature map.
    """
    if method not in METHODS:
        raise ExplainError(suggest(method, list(METHODS), "saliency method"))
    model.eval()
    if task.spatial:
        if not isinstance(task, PointTask):
            raise ExplainError(f"task {task.name!r} ({task.kind}) reads feature maps and is not a point task: no "
                               f"saliency map is known for its kind")
        return [Saliency(task.name, "heatmap", m, "heatmap") for m in _heatmaps(model, task, images)]
    index = class_index(task, wanted)
    with torch.no_grad():
        scores = _TaskScores(model, task)(images)  # (B, K)
    indices = scores.argmax(dim=1).tolist() if index is None and isinstance(task, ClassTask) else \
        [index or 0] * len(images)
    maps: list[np.ndarray | None] = [None] * len(images)
    for target in sorted(set(indices)):
        rows = [i for i, j in enumerate(indices) if j == target]
        # MONAI's Grad-CAM++ multiplies the gradients by exp(score) without broadcasting a batch: one image a call
        groups = [[r] for r in rows] if method == "gradcampp" else [rows]
        for group in groups:
            for row, found in zip(group, _grad_cam(model, task, images[group], target, method), strict=True):
                maps[row] = found
    return [Saliency(task.name, task.classes[j] if isinstance(task, ClassTask) else "value", m, method)
            for j, m in zip(indices, maps, strict=True)]


def _heatmaps(model: MultiTaskModel, task: Task, images: torch.Tensor) -> np.ndarray:
    """A point task's presence probability per cell, bilinearly brought to the images' size: (B, H, W)."""
    with torch.no_grad():
        heat = torch.sigmoid(model(images)[task.name][:, :1].float())  # (B, 1, S, S)
        heat = F.interpolate(heat, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return heat[:, 0].clamp(0, 1).numpy().astype(np.float32)


def _grad_cam(model: MultiTaskModel, task: Task, images: torch.Tensor, index: int, method: str) -> np.ndarray:
    """The mean over backbones of each backbone's Grad-CAM (++) map of score ``index``, each scaled to [0, 1]:
    (B, H, W)."""
    from monai.visualize import GradCAM, GradCAMpp  # lazy: monai is imported by the commands that draw maps only

    scores = _TaskScores(model, task).eval()  # MONAI puts a module in training mode after it if it found it there
    layers = [f"model.fusion.backbones.{i}.model.{feature_layer(b)}" for i, b in enumerate(model.fusion.backbones)]
    maps = []
    with _gradients_through(model), _hooks_removed(scores, layers), torch.enable_grad():
        cam = (GradCAMpp if method == "gradcampp" else GradCAM)(scores, target_layers=layers, postprocessing=_scale)
        for layer in range(len(layers)):
            x = images.detach().clone().requires_grad_(True)
            maps.append(cam(x, class_idx=index, layer_idx=layer).detach().float())  # (B, 1, H, W)
    fused = torch.stack(maps).mean(dim=0)
    return _scale(fused)[:, 0].numpy().astype(np.float32)


def _scale(maps: torch.Tensor) -> torch.Tensor:
    """Each map (B, 1, H, W) scaled to [0, 1] by its own minimum and maximum (zero where it is flat)."""
    low = maps.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    span = maps.flatten(1).max(dim=1).values.view(-1, 1, 1, 1) - low
    return torch.where(span > 0, (maps - low) / span.clamp(min=1e-12), torch.zeros_like(maps))


@contextlib.contextmanager
def _gradients_through(model: MultiTaskModel) -> Iterator[None]:
    """Let gradients flow through frozen backbones (they stay in eval mode and their weights are not touched)."""
    fusion, training = model.fusion, model.training
    frozen = fusion.frozen
    fusion.frozen = False
    try:
        yield
    finally:
        fusion.frozen = frozen
        model.train(training)
        model.zero_grad(set_to_none=True)


@contextlib.contextmanager
def _hooks_removed(module: nn.Module, names: list[str]) -> Iterator[None]:
    """Remove on exit the hooks that MONAI's CAM registers on the ``names`` submodules of ``module`` (it keeps no
    handles): without this every map would leave two hooks, and the tensors they hold, on the model."""
    modules = dict(module.named_modules())
    targets = [modules[n] for n in names if n in modules]
    before = [(set(m._forward_hooks), set(m._backward_hooks)) for m in targets]
    try:
        yield
    finally:
        for m, (forward, backward) in zip(targets, before, strict=True):
            for key in set(m._forward_hooks) - forward:
                del m._forward_hooks[key]
            for key in set(m._backward_hooks) - backward:
                del m._backward_hooks[key]
