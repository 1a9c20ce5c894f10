"""Task definitions: what a head outputs, how it is trained, decoded, scored and compared with a baseline.

Targets enter as a float64 NumPy array per task with ``NaN`` marking a missing label. Every task turns that into
a tensor plus a boolean mask; a masked case never reaches a loss or a metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics as M
from .errors import DataError, MTLError

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def masked_mean(per_case: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_case`` (B,) over ``mask`` (B,); exactly zero (never NaN) when nothing is labelled."""
    kept = torch.where(mask, per_case, torch.zeros_like(per_case))
    return kept.sum() / mask.sum().clamp(min=1)


@dataclass
class Task:
    """Base class of a task. Subclasses set ``kind`` and implement the abstract methods.

    Args:
        name: snake_case identifier, used as the head's name and in every output.
        weight: static loss weight (lambda_t in the paper's eq. 8).
        unit: unit of the target for reports ("px", "mm"); empty for classes.
    """

    name: str
    weight: float = 1.0
    unit: str = ""
    kind: ClassVar[str] = "task"
    higher_is_better: ClassVar[dict[str, bool]] = {}

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _NAME_CHARS or self.name[0].isdigit():
            raise MTLError(f"task name {self.name!r} must be snake_case (a-z, 0-9, _), not starting with a digit")
        if not np.isfinite(self.weight) or self.weight < 0:
            raise MTLError(f"task {self.name!r}: loss weight must be a finite number >= 0, got {self.weight}")

    # -- to override -------------------------------------------------------------------------------------------
    @property
    def out_features(self) -> int:
        """Width of the task's head."""
        raise NotImplementedError

    def validate(self, values: np.ndarray, where: str = "") -> None:
        """Raise :class:`DataError` when a labelled value is impossible for this task."""

    def fit(self, values: np.ndarray) -> None:
        """Fit whatever the task learns from the training labels (normalisation, baseline). NaN = missing."""

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn raw values (N,) with NaN for missing into a target tensor (N,) and a mask (N,) bool."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean loss over the labelled cases; zero when none is labelled."""
        raise NotImplementedError

    def decode(self, output: torch.Tensor) -> np.ndarray:
        """Head output (N, out_features) -> predictions (N,) in the task's own terms (class index or value)."""
        raise NotImplementedError

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        """Metrics on labelled cases only (``truth`` without NaN)."""
        raise NotImplementedError

    def baseline_prediction(self, n: int) -> np.ndarray:
        """The trivial predictor fit on the training labels, for ``n`` cases."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------------------
    def evaluate(self, values: np.ndarray, prediction: np.ndarray) -> dict[str, Any]:
        """Metrics and trivial-baseline metrics over the labelled cases of ``values``."""
        labelled = ~np.isnan(values)
        truth, pred = values[labelled], prediction[labelled]
        return {
            "kind": self.kind,
            "n": int(labelled.sum()),
            "metrics": self.score(truth, pred),
            "baseline": self.score(truth, self.baseline_prediction(len(truth))),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-able description used for the model's task schema."""
        return {"name": self.name, "kind": self.kind, "weight": self.weight, "unit": self.unit}

    def _check_finite_or_missing(self, values: np.ndarray, where: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1:
            raise DataError(f"task {self.name!r}{where}: targets must be 1-D (one value per case), got shape "
                            f"{values.shape}")
        if np.isinf(values).any():
            raise DataError(f"task {self.name!r}{where}: infinite target values; mark missing labels as NaN")
        return values


@dataclass
class ClassificationTask(Task):
    """Multi-class classification with optional label smoothing (the paper's eq. 6).

    Args:
        classes: class names; a target is the index of its class.
        label_smoothing: epsilon of ``(1 - eps) * one_hot + eps / K``.
    """

    classes: list[str] = field(default_factory=list)
    label_smoothing: float = 0.0
    kind: ClassVar[str] = "classification"
    _majority: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.classes) < 2:
            raise MTLError(f"task {self.name!r}: a classification task needs at least 2 classes, got {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise MTLError(f"task {self.name!r}: class names must be unique, got {self.classes}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise MTLError(f"task {self.name!r}: label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @property
    def out_features(self) -> int:
        return len(self.classes)

    def validate(self, values: np.ndarray, where: str = "") -> None:
        values = self._check_finite_or_missing(values, where)
        labelled = values[~np.isnan(values)]
        bad = labelled[(labelled < 0) | (labelled >= len(self.classes)) | (labelled != np.round(labelled))]
        if len(bad):
            raise DataError(f"task {self.name!r}{where}: class index {bad[0]:g} is out of range; expected an integer "
                            f"in 0..{len(self.classes) - 1} ({', '.join(self.classes)})")

    def fit(self, values: np.ndarray) -> None:
        labelled = values[~np.isnan(values)].astype(int)
        counts = np.bincount(labelled, minlength=len(self.classes)) if len(labelled) else np.zeros(1)
        self._majority = int(np.argmax(counts))

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ~np.isnan(values)
        return torch.from_numpy(np.where(mask, values, 0).astype(np.int64)), torch.from_numpy(mask)

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = torch.where(mask, target, torch.zeros_like(target))  # masked garbage never reaches the loss
        per_case = F.cross_entropy(output.float(), target, reduction="none", label_smoothing=self.label_smoothing)
        return masked_mean(per_case, mask)

    def decode(self, output: torch.Tensor) -> np.ndarray:
        return output.argmax(dim=1).cpu().numpy().astype(np.float64)

    def probabilities(self, output: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N, K)."""
        return torch.softmax(output.float(), dim=1).cpu().numpy()

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": M.accuracy(truth, prediction),
            "f1_macro": M.f1_macro(truth, prediction),
            "f1_weighted": M.f1_weighted(truth, prediction),
        }

    def baseline_prediction(self, n: int) -> np.ndarray:
        return np.full(n, float(self._majority))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": list(self.classes), "label_smoothing": self.label_smoothing,
                "majority": self._majority}


@dataclass
class BinaryTask(Task):
    """Binary classification with BCEWithLogits and an optional positive-class weight; targets are 0 or 1."""

    classes: list[str] = field(default_factory=lambda: ["negative", "positive"])
    pos_weight: float | None = None
    kind: ClassVar[str] = "binary"
    _majority: int = field(default=0, init=False, repr=False)

    @property
    def out_features(self) -> int:
        return 1

    def validate(self, values: np.ndarray, where: str = "") -> None:
        values = self._check_finite_or_missing(values, where)
        labelled = values[~np.isnan(values)]
        bad = labelled[(labelled != 0) & (labelled != 1)]
        if len(bad):
            raise DataError(f"task {self.name!r}{where}: binary target {bad[0]:g} is not 0 or 1")

    def fit(self, values: np.ndarray) -> None:
        labelled = values[~np.isnan(values)]
        self._majority = int(labelled.mean() > 0.5) if len(labelled) else 0

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ~np.isnan(values)
        return torch.from_numpy(np.where(mask, values, 0).astype(np.float32)), torch.from_numpy(mask)

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos_weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=output.device)
        target = torch.where(mask, target.float(), torch.zeros_like(target, dtype=torch.float32))
        per_case = F.binary_cross_entropy_with_logits(output.float().reshape(-1), target, reduction="none",
                                                      pos_weight=pos_weight)
        return masked_mean(per_case, mask)

    def decode(self, output: torch.Tensor) -> np.ndarray:
        return (output.reshape(-1) > 0).cpu().numpy().astype(np.float64)

    def probabilities(self, output: torch.Tensor) -> np.ndarray:
        """Probabilities of [negative, positive] (N, 2)."""
        p = torch.sigmoid(output.float().reshape(-1)).cpu().numpy()
        return np.stack([1 - p, p], axis=1)

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": M.accuracy(truth, prediction),
            "f1_macro": M.f1_macro(truth, prediction),
            "f1": M.binary_f1(truth, prediction),
        }

    def baseline_prediction(self, n: int) -> np.ndarray:
        return np.full(n, float(self._majority))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": list(self.classes), "pos_weight": self.pos_weight,
                "majority": self._majority}


_REGRESSION_LOSSES = ("mse", "l1", "huber")
_NORMALISATIONS = ("standardize", "minmax", "none")


@dataclass
class RegressionTask(Task):
    """Scalar regression (MSE by default, as the paper's eq. 7) on a normalised target.

    The normalisation is fit on the training split; outputs are mapped back so that every error is reported in
    the target's own units (pixels, mm).

    Args:
        loss_name: "mse", "l1" or "huber".
        normalize: "standardize", "minmax" or "none".
        value_range: span used to scale errors to [0, 1] in reports (as the paper's Table 2); the training range
            when not given.
    """

    loss_name: str = "mse"
    normalize: str = "standardize"
    value_range: float | None = None
    kind: ClassVar[str] = "regression"
    _offset: float = field(default=0.0, init=False, repr=False)
    _scale: float = field(default=1.0, init=False, repr=False)
    _mean: float = field(default=0.0, init=False, repr=False)
    _range: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_name not in _REGRESSION_LOSSES:
            raise MTLError(f"task {self.name!r}: unknown regression loss {self.loss_name!r}; use one of "
                           f"{', '.join(_REGRESSION_LOSSES)}")
        if self.normalize not in _NORMALISATIONS:
            raise MTLError(f"task {self.name!r}: unknown normalisation {self.normalize!r}; use one of "
                           f"{', '.join(_NORMALISATIONS)}")

    @property
    def out_features(self) -> int:
        return 1

    def validate(self, values: np.ndarray, where: str = "") -> None:
        self._check_finite_or_missing(values, where)

    def fit(self, values: np.ndarray) -> None:
        labelled = values[~np.isnan(values)]
        if len(labelled) == 0:
            return
        self._mean = float(labelled.mean())
        if self.normalize == "standardize":
            self._offset, self._scale = self._mean, float(labelled.std()) or 1.0
        elif self.normalize == "minmax":
            self._offset, self._scale = float(labelled.min()), float(np.ptp(labelled)) or 1.0
        self._range = self.value_range if self.value_range is not None else (float(np.ptp(labelled)) or None)

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ~np.isnan(values)
        scaled = np.where(mask, (values - self._offset) / self._scale, 0.0)
        return torch.from_numpy(scaled.astype(np.float32)), torch.from_numpy(mask)

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pred = output.float().reshape(-1)
        target = torch.where(mask, target.float(), torch.zeros_like(target, dtype=torch.float32))
        if self.loss_name == "mse":
            per_case = F.mse_loss(pred, target, reduction="none")
        elif self.loss_name == "l1":
            per_case = F.l1_loss(pred, target, reduction="none")
        else:
            per_case = F.huber_loss(pred, target, reduction="none")
        return masked_mean(per_case, mask)

    def decode(self, output: torch.Tensor) -> np.ndarray:
        return output.float().reshape(-1).cpu().numpy().astype(np.float64) * self._scale + self._offset

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        return M.regression_errors(truth, prediction, self._range)

    def baseline_prediction(self, n: int) -> np.ndarray:
        return np.full(n, self._mean)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "loss": self.loss_name, "normalize": self.normalize,
                "value_range": self._range, "offset": self._offset, "scale": self._scale, "mean": self._mean}

    def restore(self, schema: dict[str, Any]) -> None:
        """Restore the fitted normalisation from :meth:`describe` output."""
        self._offset, self._scale, self._mean = schema["offset"], schema["scale"], schema["mean"]
        self._range = schema.get("value_range")


def task_from_schema(schema: dict[str, Any]) -> Task:
    """Rebuild a fitted task from its :meth:`Task.describe` dictionary (used by ``mtl predict``)."""
    kind = schema["kind"]
    common = {"name": schema["name"], "weight": schema["weight"], "unit": schema.get("unit", "")}
    if kind == "classification":
        task: Task = ClassificationTask(**common, classes=schema["classes"],
                                        label_smoothing=schema.get("label_smoothing", 0.0))
        task._majority = schema.get("majority", 0)
    elif kind == "binary":
        task = BinaryTask(**common, classes=schema["classes"], pos_weight=schema.get("pos_weight"))
        task._majority = schema.get("majority", 0)
    elif kind == "regression":
        task = RegressionTask(**common, loss_name=schema["loss"], normalize=schema["normalize"])
        task.restore(schema)
    else:
        raise MTLError(f"unknown task kind {kind!r} in the task schema; expected classification, binary or regression")
    return task
