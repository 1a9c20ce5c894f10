"""The built-in task kinds: ``classification``, ``binary`` and ``regression``.

Each is a registered :class:`~mtl_core.tasks.base.Task` subclass carrying its schema, metrics, report section and
figure; :class:`ClassTask` holds what the two class kinds share (class names in predictions.csv, the majority
baseline, probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import check_label_smoothing, threshold_target
from ..errors import DataError, MTLError
from . import metrics as M
from . import published as P
from .base import Task, TaskSchema, masked_mean, register_task_kind

_CLASS_METRICS = {"accuracy": True, "balanced_accuracy": True, "f1_macro": True, **P.PUBLISHED_METRICS}


def _class_label(value: Any) -> str:
    """A class name as a table holds it; pandas may have read "1" as 1.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class ClassTask(Task):
    """What the class kinds share: class names, the training-majority baseline, probabilities and their metrics
    (:mod:`mtl_core.tasks.published`). Not a kind itself.

    Args:
        classes: class names; a target is the index of its class.
    """

    classes: list[str] = field(default_factory=list)
    summary_metrics: ClassVar[tuple[str, ...]] = ("f1_macro", "accuracy", "balanced_accuracy", "roc_auc")
    beats_metrics: ClassVar[tuple[str, ...]] = ("f1_macro", "balanced_accuracy")
    section: ClassVar[str] = "classification"
    figure: ClassVar[str | None] = "confusion"
    extra_figures: ClassVar[tuple[str, ...]] = ("roc", "calibration")
    _majority: int = field(default=0, init=False, repr=False)
    _prior: tuple[float, ...] | None = field(default=None, init=False, repr=False)  # training class frequencies

    def probabilities(self, output: torch.Tensor) -> np.ndarray:
        """Class probabilities (N, K)."""
        raise NotImplementedError

    @property
    def scored_columns(self) -> list[int]:
        """The probability columns scored one against the rest: every class (a binary task: the positive one)."""
        return list(range(len(self.classes)))

    def baseline_prediction(self, n: int) -> np.ndarray:
        return np.full(n, float(self._majority))

    def baseline_scores(self, n: int) -> np.ndarray | None:
        """The training class frequencies for every case (the majority class with certainty when unknown)."""
        prior = np.array(self._prior) if self._prior is not None else np.eye(len(self.classes))[self._majority]
        return np.tile(prior, (n, 1))

    def output_scores(self, output: torch.Tensor) -> np.ndarray | None:
        return self.probabilities(output)

    def choose_thresholds(self, truth: np.ndarray, scores: np.ndarray, rule: str) -> tuple[list[float | None], str]:
        return P.choose_thresholds(truth, scores, self.scored_columns, threshold_target(rule))

    def score_outputs(self, truth: np.ndarray, scores: np.ndarray,
                      thresholds: list[float | None] | None) -> tuple[dict[str, float], dict[str, str]]:
        return P.probability_metrics(truth, scores, self.scored_columns, thresholds)

    def score_columns(self, output: torch.Tensor) -> dict[str, np.ndarray]:
        """``<task>_prob_<class>``: the probability of each scored class (4 decimals)."""
        probs = self.probabilities(output)
        return {f"{self.name}_prob_{self.classes[c]}": np.round(probs[:, c], 4) for c in self.scored_columns}

    def table_columns(self, values: np.ndarray, which: str) -> dict[str, list]:
        """Class names; an empty string for a missing label."""
        return {f"{self.name}_{which}": ["" if np.isnan(v) else self.classes[int(v)]
                                         for v in np.asarray(values, np.float64)]}

    def from_table(self, frame: pd.DataFrame, which: str) -> np.ndarray:
        """Class indices of the named column: NaN where empty, -1 for a name that is not a class."""
        lookup = {c: float(i) for i, c in enumerate(self.classes)}
        return np.array([np.nan if pd.isna(v) or v == "" else lookup.get(_class_label(v), -1.0)
                         for v in frame[f"{self.name}_{which}"]], dtype=np.float64)

    def output_columns(self, output: torch.Tensor) -> dict[str, np.ndarray]:
        """``<task>_prob``: the probability of the predicted class."""
        return {f"{self.name}_prob": np.round(self.probabilities(output).max(axis=1), 4)}

    def describe_prediction(self, output: torch.Tensor) -> dict[str, Any]:
        """The most probable class and its probability."""
        probs = self.probabilities(output)[0]
        best = int(np.argmax(probs))
        return {"prediction": self.classes[best], "probability": round(float(probs[best]), 4)}

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> Task:
        task = super().from_schema(schema)
        assert isinstance(task, ClassTask)
        task._majority = int(schema.get("majority", 0))
        return task

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": list(self.classes), "majority": self._majority}


def _class_scores(truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """The metrics every class task reports."""
    return {"accuracy": M.accuracy(truth, prediction), "balanced_accuracy": M.balanced_accuracy(truth, prediction),
            "f1_macro": M.f1_macro(truth, prediction)}


@register_task_kind
@dataclass
class ClassificationTask(ClassTask):
    """Multi-class classification with optional label smoothing (the paper's eq. 6).

    Args:
        classes: class names; a target is the index of its class.
        label_smoothing: epsilon of ``(1 - eps) * one_hot + eps / K``.
    """

    label_smoothing: float = 0.0
    kind: ClassVar[str] = "classification"
    target_dtype: ClassVar[torch.dtype] = torch.int64
    higher_is_better: ClassVar[dict[str, bool]] = {**_CLASS_METRICS, "f1_weighted": True}

    class Schema(TaskSchema):
        """``describe()`` of a classification task."""

        kind: Literal["classification"]
        classes: list[str]
        label_smoothing: float = 0.0
        majority: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.classes) < 2:
            raise MTLError(f"task {self.name!r}: a classification task needs at least 2 classes, got {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise MTLError(f"task {self.name!r}: class names must be unique, got {self.classes}")
        check_label_smoothing(self.label_smoothing, f"task {self.name!r}")

    @classmethod
    def example(cls) -> Task:
        return cls("classification", classes=["a", "b", "c"], label_smoothing=0.1)

    @property
    def out_features(self) -> int:
        return len(self.classes)

    def invalid_targets(self, values: np.ndarray) -> tuple[np.ndarray, str]:
        k = len(self.classes)
        bad = ~np.isnan(values) & ((values < 0) | (values >= k) | (values != np.round(values)))
        return bad, f"an integer class index in 0..{k - 1} ({', '.join(self.classes)})"

    def validate(self, values: np.ndarray, where: str = "") -> None:
        values = self._check_finite_or_missing(values, where)
        bad, expected = self.invalid_targets(values)
        if bad.any():
            raise DataError(f"task {self.name!r}{where}: class index {values[bad][0]:g} is out of range; expected "
                            f"{expected}")

    def fit(self, values: np.ndarray) -> None:
        labelled = values[self.labelled(values)].astype(int)
        counts = np.bincount(labelled, minlength=len(self.classes)) if len(labelled) else np.zeros(1)
        self._majority = int(np.argmax(counts))
        self._prior = tuple(float(c) for c in counts / counts.sum()) if len(labelled) else None

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.labelled(values)
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
        return {**_class_scores(truth, prediction), "f1_weighted": M.f1_weighted(truth, prediction)}

    @classmethod
    def loss_label(cls, schema: dict[str, Any]) -> str:
        return "cross-entropy"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "label_smoothing": self.label_smoothing}


@register_task_kind
@dataclass
class BinaryTask(ClassTask):
    """Binary classification with BCEWithLogits and an optional positive-class weight; targets are 0 or 1."""

    classes: list[str] = field(default_factory=lambda: ["negative", "positive"])
    pos_weight: float | None = None
    kind: ClassVar[str] = "binary"
    target_dtype: ClassVar[torch.dtype] = torch.float32
    higher_is_better: ClassVar[dict[str, bool]] = {**_CLASS_METRICS, "f1": True}

    class Schema(TaskSchema):
        """``describe()`` of a binary task."""

        kind: Literal["binary"]
        classes: list[str]
        pos_weight: float | None = None
        majority: int = 0

    @property
    def out_features(self) -> int:
        return 1

    @property
    def scored_columns(self) -> list[int]:
        return [1]

    def invalid_targets(self, values: np.ndarray) -> tuple[np.ndarray, str]:
        return ~np.isnan(values) & (values != 0) & (values != 1), "0 or 1"

    def validate(self, values: np.ndarray, where: str = "") -> None:
        values = self._check_finite_or_missing(values, where)
        bad, _ = self.invalid_targets(values)
        if bad.any():
            raise DataError(f"task {self.name!r}{where}: binary target {values[bad][0]:g} is not 0 or 1")

    def fit(self, values: np.ndarray) -> None:
        labelled = values[self.labelled(values)]
        self._majority = int(labelled.mean() > 0.5) if len(labelled) else 0
        self._prior = (1.0 - float(labelled.mean()), float(labelled.mean())) if len(labelled) else None

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.labelled(values)
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
        return {**_class_scores(truth, prediction), "f1": M.binary_f1(truth, prediction)}

    @classmethod
    def loss_label(cls, schema: dict[str, Any]) -> str:
        return "BCE"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pos_weight": self.pos_weight}


_REGRESSION_LOSSES = ("mse", "l1", "huber")
_NORMALISATIONS = ("standardize", "minmax", "none")
Bounds = tuple[float | None, float | None]


@register_task_kind
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
        bounds: the declared range (low, high) of the target, either side None for open; predictions are clamped
            into it (a coordinate in a 2048-pixel frame: (0, 2048); a size: (0, None)).
    """

    loss_name: str = "mse"
    normalize: str = "standardize"
    value_range: float | None = None
    bounds: Bounds = (None, None)
    kind: ClassVar[str] = "regression"
    summary_metrics: ClassVar[tuple[str, ...]] = ("mae",)
    higher_is_better: ClassVar[dict[str, bool]] = {k: False for k in ("mse", "mae", "rmse", "mse_scaled",
                                                                        "mae_scaled")}
    figure: ClassVar[str | None] = "scatter"
    _offset: float = field(default=0.0, init=False, repr=False)
    _scale: float = field(default=1.0, init=False, repr=False)
    _mean: float = field(default=0.0, init=False, repr=False)
    _range: float | None = field(default=None, init=False, repr=False)

    class Schema(TaskSchema):
        """``describe()`` of a regression task, with its fitted normalisation."""

        kind: Literal["regression"]
        loss: Literal["mse", "l1", "huber"]
        normalize: Literal["standardize", "minmax", "none"]
        value_range: float | None = None
        offset: float
        scale: float
        mean: float
        bounds: Bounds = (None, None)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_name not in _REGRESSION_LOSSES:
            raise MTLError(f"task {self.name!r}: unknown regression loss {self.loss_name!r}; use one of "
                           f"{', '.join(_REGRESSION_LOSSES)}")
        if self.normalize not in _NORMALISATIONS:
            raise MTLError(f"task {self.name!r}: unknown normalisation {self.normalize!r}; use one of "
                           f"{', '.join(_NORMALISATIONS)}")
        self.bounds = tuple(self.bounds)  # type: ignore[assignment]  # a list from JSON or YAML
        if len(self.bounds) != 2 or None not in self.bounds and not self.bounds[0] < self.bounds[1]:
            raise MTLError(f"task {self.name!r}: bounds must be (low, high) with low < high (None for open), got "
                           f"{self.bounds}")

    @property
    def out_features(self) -> int:
        return 1

    def fit(self, values: np.ndarray) -> None:
        labelled = values[self.labelled(values)]
        if len(labelled) == 0:
            return
        self._mean = float(labelled.mean())
        if self.normalize == "standardize":
            self._offset, self._scale = self._mean, float(labelled.std()) or 1.0
        elif self.normalize == "minmax":
            self._offset, self._scale = float(labelled.min()), float(np.ptp(labelled)) or 1.0
        self._range = self.value_range if self.value_range is not None else (float(np.ptp(labelled)) or None)

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.labelled(values)
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
        """Head output (N, 1) -> values (N,) in the target's units, clamped into :attr:`bounds`."""
        values = output.float().reshape(-1).cpu().numpy().astype(np.float64) * self._scale + self._offset
        low, high = self.bounds
        if low is None and high is None:
            return values
        return np.clip(values, -np.inf if low is None else low, np.inf if high is None else high)

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        return M.regression_errors(truth, prediction, self._range)

    def baseline_prediction(self, n: int) -> np.ndarray:
        return np.full(n, self._mean)

    @classmethod
    def loss_label(cls, schema: dict[str, Any]) -> str:
        return f"{schema.get('loss', 'loss').upper()} (normalised target)"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "loss": self.loss_name, "normalize": self.normalize,
                "value_range": self._range, "offset": self._offset, "scale": self._scale, "mean": self._mean,
                "bounds": list(self.bounds)}

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> Task:
        task = cls(schema["name"], weight=schema["weight"], unit=schema.get("unit", ""), loss_name=schema["loss"],
                   normalize=schema["normalize"], bounds=tuple(schema.get("bounds", (None, None))))
        task.restore(schema)
        return task

    def restore(self, schema: dict[str, Any]) -> None:
        """Restore the fitted normalisation from :meth:`describe` output."""
        self._offset, self._scale, self._mean = schema["offset"], schema["scale"], schema["mean"]
        self._range = schema.get("value_range")
