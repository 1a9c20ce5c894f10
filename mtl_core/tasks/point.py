"""The ``point`` task kind: where a thing is in the image (x, y), and optionally how large it is there.

A point task reads the fused feature *map* (``model.pooling: map``), not the pooled vector: a heatmap head scores
every cell, decoding takes the soft-argmax (so a point always lies inside the image) and reads the extent at the
found location. See :mod:`mtl_core.tasks.heatmap` for the losses and ``docs/architecture.md`` for why both are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ..errors import DataError, MTLError
from . import heatmap as H
from .base import Task, TaskSchema, masked_mean, register_task_kind
from .metrics import regression_errors


@register_task_kind
@dataclass
class PointTask(Task):
    """A 2-D location in a ``frame`` of (width, height) units, with an optional extent read at that location.

    Targets are (N, 2) ``x, y`` (origin top-left, x to the right, y down, in frame units such as pixels of the
    original image) or (N, 3) with the extent (e.g. a diameter in mm); NaN marks a case without a point. With
    ``negatives`` such a case is known to have none (a chest without a nodule) and teaches the heatmap where
    nothing is; otherwise it is only missing and is masked.

    Args:
        frame: width and height of the coordinate frame (e.g. 2048 x 2048 pixels of the original radiograph).
        axes: names of the x and y entries in ``metrics.json`` and ``predictions.csv``.
        extent: name of the extent entry, or None for a point without extent.
        extent_unit: unit of the extent ("mm").
        extent_scale: frame units per extent unit (pixels per mm); with it a "hit" is a point found within one
            extent (diameter) of the truth, else within ``hit_radius`` frame units.
        sigma: width of the Gaussian target in cells of the map.
        coordinate_weight: weight of the soft-argmax L1 loss (in fractions of the frame) beside the focal loss.
        head_width: channels of the head's hidden layers; 0 for a linear score per cell.
        decode_radius: decode by the soft-argmax over the cells within this many cells of the strongest one
            (None: over the whole map, which a faint response anywhere pulls towards the centre).
        lr_scale: the head's learning rate is the run's times this (a new head on frozen maps learns from
            scratch, where the trunk's rate suits the paper's fully connected layers).

    Example:
        >>> task = PointTask("nodule", frame=(2048, 2048), extent="size", extent_unit="mm")
        >>> task.out_features, task.target_width
        (3, 3)
    """

    frame: tuple[float, float] = (1.0, 1.0)
    axes: tuple[str, str] = ("x", "y")
    extent: str | None = None
    extent_unit: str = ""
    extent_scale: float | None = None
    hit_radius: float | None = None
    negatives: bool = True
    sigma: float = 1.0
    coordinate_weight: float = 10.0
    head_width: int = 0
    decode_radius: int | None = 2
    lr_scale: float = 10.0
    kind: ClassVar[str] = "point"
    spatial: ClassVar[bool] = True
    section: ClassVar[str] = "point"
    figure: ClassVar[str | None] = "points"
    summary_metrics: ClassVar[tuple[str, ...]] = ("distance", "hit_rate", "mae_x", "mae_y")
    beats_metrics: ClassVar[tuple[str, ...]] = ("distance",)
    higher_is_better: ClassVar[dict[str, bool]] = {"distance": False, "median_distance": False, "hit_rate": True,
                                                   "mae_x": False, "mae_y": False, "mae_extent": False}
    target_dtype: ClassVar[torch.dtype] = torch.float32
    _centre: tuple[float, float] = field(default=(0.5, 0.5), init=False, repr=False)  # mean point (fractions)
    _extent_mean: float = field(default=0.0, init=False, repr=False)
    _extent_std: float = field(default=1.0, init=False, repr=False)
    _extent_range: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.frame = (float(self.frame[0]), float(self.frame[1]))
        if not all(np.isfinite(self.frame)) or min(self.frame) <= 0:
            raise MTLError(f"task {self.name!r}: frame must be two positive sizes (width, height), got {self.frame}")
        names = [*self.axes] + ([self.extent] if self.extent is not None else [])
        if len(self.axes) != 2 or len(set(names)) != len(names):
            raise MTLError(f"task {self.name!r}: axes must be two distinct names, and the extent another one; got "
                           f"{self.axes} and {self.extent!r}")
        if self.sigma <= 0 or self.coordinate_weight < 0 or self.head_width < 0 or self.lr_scale <= 0 \
                or (self.decode_radius is not None and self.decode_radius < 0):
            raise MTLError(f"task {self.name!r}: need sigma > 0, coordinate_weight >= 0, head_width >= 0, "
                           f"lr_scale > 0 and decode_radius >= 0 (or None)")
        self.axes = (str(self.axes[0]), str(self.axes[1]))

    # -- shapes ------------------------------------------------------------------------------------------------
    @property
    def target_width(self) -> int:  # type: ignore[override]
        """Columns of the raw targets: x, y and the extent when there is one."""
        return 2 + (self.extent is not None)

    @property
    def out_features(self) -> int:
        """Channels of the head's output map: presence logits, location logits, then the extent."""
        return 2 + (self.extent is not None)

    def create_head(self, in_features: int) -> nn.Module:
        """A :class:`~mtl_core.tasks.heatmap.HeatmapHead` over ``in_features`` map channels."""
        return H.HeatmapHead(in_features, self.head_width, with_extent=self.extent is not None)

    def labelled(self, values: np.ndarray) -> np.ndarray:
        """Cases with a point: x and y both given. (N, k) -> (N,) bool."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.target_width)
        return ~np.isnan(values[:, :2]).any(axis=1)

    class Schema(TaskSchema):
        """``describe()`` of a point task."""

        kind: Literal["point"]
        frame: tuple[float, float]
        axes: tuple[str, str]
        extent: str | None = None
        extent_unit: str = ""
        extent_scale: float | None = None
        hit_radius: float | None = None
        negatives: bool = True
        sigma: float = 1.0
        coordinate_weight: float = 10.0
        head_width: int = 0
        decode_radius: int | None = 2
        lr_scale: float = 10.0
        centre: tuple[float, float] = (0.5, 0.5)
        extent_mean: float = 0.0
        extent_std: float = 1.0
        extent_range: float | None = None

    @classmethod
    def example(cls) -> Task:
        return cls("point", frame=(64, 48), extent="size", extent_unit="mm", extent_scale=2.0)

    # -- training ----------------------------------------------------------------------------------------------
    def validate(self, values: np.ndarray, where: str = "") -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.target_width:
            raise DataError(f"task {self.name!r}{where}: targets must have shape (N, {self.target_width}) "
                            f"({', '.join(self._columns())}), got {values.shape}")
        if np.isinf(values).any():
            raise DataError(f"task {self.name!r}{where}: infinite target values; mark missing ones as NaN")
        xy = values[self.labelled(values), :2]
        outside = (xy < 0) | (xy > np.array(self.frame))
        if outside.any():
            row = int(np.flatnonzero(outside.any(axis=1))[0])
            raise DataError(f"task {self.name!r}{where}: point {tuple(xy[row])} lies outside the {self.frame[0]:g} x "
                            f"{self.frame[1]:g} frame; give coordinates in the frame's units")

    def fit(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        points = values[self.labelled(values)]
        if len(points):
            self._centre = (float(points[:, 0].mean() / self.frame[0]), float(points[:, 1].mean() / self.frame[1]))
        if self.extent is not None:
            extents = points[:, 2][~np.isnan(points[:, 2])] if len(points) else np.zeros(0)
            if len(extents):
                self._extent_mean, self._extent_std = float(extents.mean()), float(extents.std()) or 1.0
                self._extent_range = float(np.ptp(extents)) or None

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, k) -> targets (N, 5) ``u, v, extent (normalised), has point, has extent`` and mask (N,)."""
        values = np.asarray(values, dtype=np.float64)
        present = self.labelled(values)
        out = np.zeros((len(values), 5), dtype=np.float32)
        out[present, 0] = values[present, 0] / self.frame[0]
        out[present, 1] = values[present, 1] / self.frame[1]
        if self.extent is not None:
            has_extent = present & ~np.isnan(values[:, 2])
            out[has_extent, 2] = (values[has_extent, 2] - self._extent_mean) / self._extent_std
            out[:, 4] = has_extent
        out[:, 3] = present
        mask = present | (self.negatives & np.isnan(values).all(axis=1))
        return torch.from_numpy(out), torch.from_numpy(mask)

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Focal loss on every masked-in case; where a point is given, the location cross-entropy, the coordinate
        L1 (weighted by ``coordinate_weight``) and the extent L1."""
        present = target[:, 3] > 0.5
        heat = H.gaussian_targets(target[:, :2], present, output.shape[-1], self.sigma)
        total = masked_mean(H.gaussian_focal_loss(output[:, 0], heat), mask)
        located = mask & present
        found, probabilities = H.soft_argmax(output[:, 1])
        coordinate = (found - target[:, :2]).abs().sum(dim=1)
        total = total + masked_mean(H.location_cross_entropy(output[:, 1], heat), located)
        total = total + self.coordinate_weight * masked_mean(coordinate, located)
        if self.extent is not None:
            extent = (H.expected_extent(output[:, 2], probabilities) - target[:, 2]).abs()
            total = total + masked_mean(extent, located & (target[:, 4] > 0.5))
        return total

    # -- predictions -------------------------------------------------------------------------------------------
    def decode(self, output: torch.Tensor) -> np.ndarray:
        """Head maps (N, 2|3, S, S) -> (N, k): the soft-argmax point in frame units and the extent read there,
        shrunk towards the training mean by the presence probability (a mixture of "found: the extent read at the
        point" and "not found: the prior mean", so a wrong location does not give a confident wrong size)."""
        logits = output[:, 1]
        found, probabilities = H.soft_argmax(logits) if self.decode_radius is None else \
            H.local_soft_argmax(logits, self.decode_radius)
        columns = [found[:, 0] * self.frame[0], found[:, 1] * self.frame[1]]
        if self.extent is not None:
            read = H.expected_extent(output[:, 2], probabilities)  # (N,) normalised; the training mean is 0
            extent = self._presence(output) * read * self._extent_std + self._extent_mean
            columns.append(extent.clamp(min=0.0))  # an extent is never negative
        return torch.stack(columns, dim=1).detach().cpu().numpy().astype(np.float64)

    def presence(self, output: torch.Tensor) -> np.ndarray:
        """How sure the heatmap is that there is a point at all: its highest cell probability. (N,)."""
        return self._presence(output).detach().cpu().numpy()

    @staticmethod
    def _presence(output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output[:, 0].float().flatten(1).max(dim=1).values)  # (N,)

    def baseline_prediction(self, n: int) -> np.ndarray:
        """The mean training point (and mean extent) for every case."""
        row = [self._centre[0] * self.frame[0], self._centre[1] * self.frame[1]]
        if self.extent is not None:
            row.append(self._extent_mean)
        return np.tile(np.array(row, dtype=np.float64), (n, 1))

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        """MAE per axis, mean and median Euclidean distance, hit rate and extent MAE (labelled cases only)."""
        truth, prediction = np.asarray(truth, np.float64), np.asarray(prediction, np.float64)
        if len(truth) == 0:
            return {k: float("nan") for k in self.higher_is_better if k != "mae_extent" or self.extent}
        error = prediction[:, :2] - truth[:, :2]
        distance = np.hypot(error[:, 0], error[:, 1])
        out = {"distance": float(distance.mean()), "median_distance": float(np.median(distance)),
               "hit_rate": float(np.mean(distance <= self._hit_radius(truth))),
               "mae_x": float(np.abs(error[:, 0]).mean()), "mae_y": float(np.abs(error[:, 1]).mean())}
        if self.extent is not None:
            given = ~np.isnan(truth[:, 2])
            out["mae_extent"] = float(np.abs(prediction[given, 2] - truth[given, 2]).mean()) if given.any() \
                else float("nan")
        return out

    def _hit_radius(self, truth: np.ndarray) -> np.ndarray | float:
        if self.extent is not None and self.extent_scale:
            return np.nan_to_num(truth[:, 2]) * self.extent_scale  # one extent (a diameter) from the truth
        return self.hit_radius if self.hit_radius is not None else 0.05 * float(np.hypot(*self.frame))

    def components(self, values: np.ndarray, prediction: np.ndarray) -> dict[str, dict[str, Any]]:
        """Regression-like entries per axis (and the extent), comparable with scalar x / y / size tasks."""
        values, prediction = np.asarray(values, np.float64), np.asarray(prediction, np.float64)
        baseline = self.baseline_prediction(len(values))
        units = [self.unit, self.unit, self.extent_unit]
        ranges = [self.frame[0], self.frame[1], self._extent_range]
        out = {}
        for col, name in enumerate(self._columns()):
            keep = ~np.isnan(values[:, col]) & self.labelled(values)
            truth = values[keep, col]
            out[name] = {"kind": "regression", "unit": units[col], "n": int(keep.sum()), "part_of": self.name,
                         "metrics": regression_errors(truth, prediction[keep, col], ranges[col]),
                         "baseline": regression_errors(truth, baseline[keep, col], ranges[col])}
        return out

    def _columns(self) -> list[str]:
        return [*self.axes] + ([self.extent] if self.extent is not None else [])

    def table_columns(self, values: np.ndarray, which: str) -> dict[str, list]:
        """``x_true``, ``y_true`` (and ``size_true``), or the ``_pred`` ones; None where a case has no point."""
        values = np.asarray(values, np.float64).reshape(-1, self.target_width)
        return {f"{name}_{which}": [None if np.isnan(v) else float(v) for v in values[:, col]]
                for col, name in enumerate(self._columns())}

    def from_table(self, frame, which: str) -> np.ndarray:
        """The inverse of :meth:`table_columns`: (N, k)."""
        return np.stack([frame[f"{name}_{which}"].to_numpy(np.float64) for name in self._columns()], axis=1)

    def output_columns(self, output: torch.Tensor) -> dict[str, np.ndarray]:
        """``<name>_presence``: the heatmap's highest cell probability."""
        return {f"{self.name}_presence": np.round(self.presence(output), 4)}

    def describe_prediction(self, output: torch.Tensor) -> dict[str, Any]:
        """One image: the point (and extent) with units, and the presence probability."""
        row = self.decode(output)[0]
        out: dict[str, Any] = {name: round(float(row[col]), 1) for col, name in enumerate(self._columns())}
        out["unit"] = self.unit
        if self.extent is not None:
            out[f"{self.extent}_unit"] = self.extent_unit
        out["presence"] = round(float(self.presence(output)[0]), 4)
        return out

    # -- schema ------------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "frame": list(self.frame), "axes": list(self.axes), "extent": self.extent,
                "extent_unit": self.extent_unit, "extent_scale": self.extent_scale, "hit_radius": self.hit_radius,
                "negatives": self.negatives, "sigma": self.sigma, "coordinate_weight": self.coordinate_weight,
                "head_width": self.head_width, "decode_radius": self.decode_radius, "lr_scale": self.lr_scale,
                "centre": list(self._centre), "extent_mean": self._extent_mean,
                "extent_std": self._extent_std, "extent_range": self._extent_range}

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> PointTask:
        keys = ("frame", "axes", "extent", "extent_unit", "extent_scale", "hit_radius", "negatives", "sigma",
                "coordinate_weight", "head_width", "decode_radius", "lr_scale")
        task = cls(schema["name"], weight=schema.get("weight", 1.0), unit=schema.get("unit", ""),
                   **{k: tuple(schema[k]) if k in ("frame", "axes") else schema[k] for k in keys if k in schema})
        task._centre = tuple(schema.get("centre", (0.5, 0.5)))
        task._extent_mean, task._extent_std = schema.get("extent_mean", 0.0), schema.get("extent_std", 1.0)
        task._extent_range = schema.get("extent_range")
        return task
