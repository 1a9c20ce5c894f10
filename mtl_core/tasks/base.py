"""Tasks: what a head outputs, how it is trained, decoded, scored, displayed and compared with a baseline.

A task *kind* is a :class:`Task` subclass registered in :data:`TASK_KINDS` with :func:`register_task_kind`. The
class carries everything the engine needs to know about its kind -- the JSON schema of its ``describe()`` output,
its metrics and their direction, where the report shows it, which figure draws it, its predictions.csv columns --
so that a kind registered from a plugin runs through ``mtl run`` and ``mtl predict`` without engine changes. The
built-in kinds (classification, binary, regression) live in :mod:`mtl_core.tasks.kinds`.

Targets enter as a float64 NumPy array per task, (N,) or (N, k) for a kind with ``target_width`` k, with ``NaN``
marking a missing label. Every task turns that into a tensor plus a boolean mask (N,); a masked case never reaches
a loss or a metric.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from torch import nn

from ..config import Strict
from ..errors import DataError, MTLError
from ..registry import Registry, is_snake_case

#: figure names a kind may pick (``Task.figure``); :mod:`mtl_core.report.figures` maps each to its renderer
FIGURE_NAMES = ("confusion", "scatter", "points", "roc", "calibration")
K = TypeVar("K", bound=type)


def masked_mean(per_case: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_case`` (B,) over ``mask`` (B,); exactly zero (never NaN) when nothing is labelled."""
    kept = torch.where(mask, per_case, torch.zeros_like(per_case))
    return kept.sum() / mask.sum().clamp(min=1)


class TaskSchema(Strict):
    """Fields every task's ``describe()`` output has; a kind's ``Schema`` extends it with ``kind: Literal[...]``."""

    name: str
    kind: str
    weight: float
    unit: str = ""


@dataclass
class Task:
    """Base class of a task kind. A kind sets the class variables below and implements the methods marked "to
    override"; the defaults suit a kind with one value per case (``target_width`` 1) and a linear head.

    Args:
        name: snake_case identifier, used as the head's name and in every output.
        weight: static loss weight (lambda_t in the paper's eq. 8).
        unit: unit of the target for reports ("px", "mm"); empty for classes.

    Attributes:
        kind: the registry name; ``Schema.kind`` is ``Literal[kind]``.
        Schema: pydantic model (``extra="forbid"``) of :meth:`describe`'s output, checked by :func:`task_from_schema`.
        target_width: columns of the raw targets: (N,) when 1, (N, k) when k > 1.
        target_dtype: dtype of the encoded target tensor in a batch.
        summary_metrics: metrics shown in the console, compare and strata tables; the first is the primary one.
        higher_is_better: direction of every metric key the kind reports.
        beats_metrics: metrics that must all beat the trivial baseline for "beats: yes" (default: the primary).
        section: the report.md table of the kind's entries: "classification", "regression", or its own (default:
            the kind), drawn as a generic table of the summary metrics.
        figure: the figure drawn per task ("confusion", "scatter", "points": points on test images) or None.
        extra_figures: more figures drawn per task ("roc": ROC and precision-recall curves, "calibration": the
            reliability diagram), from the columns of :meth:`score_columns`.
        spatial: True when the head reads feature maps instead of the pooled vector.
    """

    name: str
    weight: float = 1.0
    unit: str = ""
    kind: ClassVar[str] = ""
    Schema: ClassVar[type[BaseModel]] = TaskSchema
    target_width: ClassVar[int] = 1
    target_dtype: ClassVar[torch.dtype] = torch.float32
    summary_metrics: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[dict[str, bool]] = {}
    beats_metrics: ClassVar[tuple[str, ...]] = ()
    section: ClassVar[str] = ""
    figure: ClassVar[str | None] = None
    extra_figures: ClassVar[tuple[str, ...]] = ()
    spatial: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not is_snake_case(self.name):
            raise MTLError(f"task name {self.name!r} must be snake_case (a-z, 0-9, _), starting with a letter")
        if not np.isfinite(self.weight) or self.weight < 0:
            raise MTLError(f"task {self.name!r}: loss weight must be a finite number >= 0, got {self.weight}")

    # -- to override -------------------------------------------------------------------------------------------
    @property
    def out_features(self) -> int:
        """Width of the task's head."""
        raise NotImplementedError

    def fit(self, values: np.ndarray) -> None:
        """Fit whatever the task learns from the training labels (normalisation, baseline). NaN = missing."""

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn raw values (N,) or (N, k), NaN for missing, into a target tensor and a mask (N,) bool."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean loss over the labelled cases; zero when none is labelled."""
        raise NotImplementedError

    def decode(self, output: torch.Tensor) -> np.ndarray:
        """Head output (N, out_features) -> predictions (N,) or (N, k) in the task's own terms."""
        raise NotImplementedError

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        """Metrics on labelled cases only (every row of ``truth`` is labelled)."""
        raise NotImplementedError

    def baseline_prediction(self, n: int) -> np.ndarray:
        """The trivial predictor fit on the training labels, for ``n`` cases."""
        raise NotImplementedError

    # -- defaults for one value per case -----------------------------------------------------------------------
    def labelled(self, values: np.ndarray) -> np.ndarray:
        """Which cases carry a label: (N,) bool. Default: not NaN; with several columns, any column given."""
        missing = np.isnan(np.asarray(values, dtype=np.float64))
        return ~missing if missing.ndim == 1 else ~missing.reshape(len(missing), max(1, self.target_width)).all(axis=1)

    def invalid_targets(self, values: np.ndarray) -> tuple[np.ndarray, str]:
        """Labelled cases whose value is impossible for this task, (N,) bool, and what was expected instead."""
        infinite = np.isinf(np.asarray(values, dtype=np.float64))
        bad = infinite if infinite.ndim == 1 else infinite.reshape(len(infinite), max(1, self.target_width)).any(axis=1)
        return bad, "a finite number (NaN only where the label is missing)"

    def validate(self, values: np.ndarray, where: str = "") -> None:
        """Raise :class:`DataError` when the targets have the wrong shape or a labelled value is impossible."""
        values = self._check_finite_or_missing(values, where)
        bad, expected = self.invalid_targets(values)
        if bad.any():
            raise DataError(f"task {self.name!r}{where}: target {format_target(values[bad][0])} is impossible; "
                            f"expected {expected}")

    def create_head(self, in_features: int) -> nn.Module:
        """The task's head on ``in_features`` shared features: a linear layer to :attr:`out_features`."""
        return nn.Linear(in_features, self.out_features)

    def components(self, values: np.ndarray, prediction: np.ndarray) -> dict[str, dict[str, Any]]:
        """Extra metrics.json entries (name -> :meth:`evaluate`-shaped dict with ``"part_of": self.name``)."""
        return {}

    def table_columns(self, values: np.ndarray, which: str) -> dict[str, list]:
        """predictions.csv columns of truth (``which="true"``) or prediction (``"pred"``): floats, None if missing.

        A kind with ``target_width`` > 1 overrides this and :meth:`from_table`."""
        return {f"{self.name}_{which}": [None if np.isnan(v) else float(v) for v in np.asarray(values, np.float64)]}

    def from_table(self, frame: pd.DataFrame, which: str) -> np.ndarray:
        """The inverse of :meth:`table_columns`: the values of ``frame``'s columns, NaN where missing."""
        return pd.to_numeric(frame[f"{self.name}_{which}"], errors="coerce").to_numpy(np.float64)

    def output_columns(self, output: torch.Tensor) -> dict[str, np.ndarray]:
        """Extra predictions.csv columns from the head output (N, ...), such as a probability. Default: none."""
        return {}

    # -- scores of ranking and calibration (a kind without them keeps these defaults) -----------------------------
    def output_scores(self, output: torch.Tensor) -> np.ndarray | None:
        """Scores (N, K) that ranking and calibration metrics read (a class task: its probabilities); None when the
        kind has none, and then :meth:`choose_thresholds` and :meth:`score_outputs` are never called."""
        return None

    def baseline_scores(self, n: int) -> np.ndarray | None:
        """The trivial predictor's scores for ``n`` cases (a class task: the training class frequencies)."""
        return None

    def choose_thresholds(self, truth: np.ndarray, scores: np.ndarray, rule: str) -> tuple[list[float | None], str]:
        """Decision thresholds chosen on labelled validation cases with ``rule`` (``evaluation.threshold``), None
        where none can be chosen, and why when none could."""
        return [], ""

    def score_outputs(self, truth: np.ndarray, scores: np.ndarray,
                      thresholds: list[float | None] | None) -> tuple[dict[str, float], dict[str, str]]:
        """Metrics of :meth:`output_scores` on labelled cases (``thresholds`` None: those needing one are left
        out), and the reason of each NaN."""
        return {}, {}

    def score_columns(self, output: torch.Tensor) -> dict[str, np.ndarray]:
        """predictions.csv columns of the scores that the ``extra_figures`` read. Default: none."""
        return {}

    def describe_prediction(self, output: torch.Tensor) -> dict[str, Any]:
        """One image's prediction (``output`` (1, ...)) for ``mtl predict``: the value(s) and the unit."""
        value = np.asarray(self.decode(output)[0], dtype=np.float64)
        shown = round(float(value), 3) if value.ndim == 0 else [round(float(v), 3) for v in value]
        return {"prediction": shown, "unit": self.unit}

    @classmethod
    def loss_label(cls, schema: dict[str, Any]) -> str:
        """Axis label of this kind's loss in the learning curves, from its :meth:`describe` dictionary."""
        return "loss"

    @classmethod
    def example(cls) -> Task:
        """A small valid instance with default settings (for registry-wide tests); override when they are not."""
        return cls(name=cls.kind)

    # -- shared ------------------------------------------------------------------------------------------------
    def evaluate(self, values: np.ndarray, prediction: np.ndarray) -> dict[str, Any]:
        """Metrics and trivial-baseline metrics over the labelled cases of ``values``."""
        values = np.asarray(values, dtype=np.float64)
        labelled = self.labelled(values)
        truth, pred = values[labelled], np.asarray(prediction)[labelled]
        return {
            "kind": self.kind,
            "unit": self.unit,
            "n": int(labelled.sum()),
            "metrics": self.score(truth, pred),
            "baseline": self.score(truth, self.baseline_prediction(len(truth))),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-able description used for the model's task schema (validated by ``Schema``)."""
        return {"name": self.name, "kind": self.kind, "weight": self.weight, "unit": self.unit}

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> Task:
        """Rebuild a task from its validated :meth:`describe` dictionary. The default passes the keys that name
        constructor fields; a kind with fitted state overrides it to restore that state too."""
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in schema.items() if k in fields})

    def _check_finite_or_missing(self, values: np.ndarray, where: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        width = self.target_width
        if width == 1 and values.ndim != 1:
            raise DataError(f"task {self.name!r}{where}: targets must be 1-D (one value per case), got shape "
                            f"{values.shape}")
        if width > 1 and (values.ndim != 2 or values.shape[1] != width):
            raise DataError(f"task {self.name!r}{where}: targets must have shape (N, {width}), got {values.shape}")
        if np.isinf(values).any():
            raise DataError(f"task {self.name!r}{where}: infinite target values; mark missing labels as NaN")
        return values


def format_target(value: Any) -> str:
    """A target value (a number, or a row of a task with several columns) for a message: ``3``, ``(12, 40)``."""
    value = np.asarray(value, dtype=np.float64)
    return f"{float(value):g}" if value.ndim == 0 else "(" + ", ".join(f"{v:g}" for v in value) + ")"


# -- the registry of kinds ---------------------------------------------------------------------------------------

TASK_KINDS: Registry[type[Task]] = Registry("task kind")


def register_task_kind(cls: K) -> K:
    """Class decorator: register a :class:`Task` subclass under its ``kind``, after checking its declarations.

    Registering a class again under the same module and qualified name (a plugin file imported twice) replaces
    it; another class under a registered kind raises.

    Example:
        >>> from typing import Literal
        >>> @register_task_kind
        ... @dataclass
        ... class PercentTask(RegressionTask):  # a share: clamped to [0, 100], in a report section of its own
        ...     bounds: tuple[float | None, float | None] = (0.0, 100.0)
        ...     kind: ClassVar[str] = "percent"
        ...     section: ClassVar[str] = "percent"
        ...     class Schema(RegressionTask.Schema):
        ...         kind: Literal["percent"]
        >>> TASK_KINDS.get("percent") is PercentTask
        True
    """
    _check_kind_class(cls)
    old = TASK_KINDS.get(cls.kind) if cls.kind in TASK_KINDS else None
    same = old is not None and (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
    if not cls.section:
        cls.section = cls.kind
    if not cls.beats_metrics:
        cls.beats_metrics = cls.summary_metrics[:1]
    TASK_KINDS.register(cls.kind, replace=same)(cls)
    return cls


def _check_kind_class(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise MTLError(f"register_task_kind: {cls!r} is not a subclass of mtl_core.Task")
    kind, where = cls.kind, f"task kind {cls.__qualname__}"
    if not is_snake_case(kind):
        raise MTLError(f"{where}: kind {kind!r} must be a snake_case name; set kind: ClassVar[str] = 'my_kind'")
    schema = cls.Schema
    literal = schema.model_fields.get("kind") if isinstance(schema, type) and issubclass(schema, BaseModel) else None
    if literal is None or getattr(literal.annotation, "__args__", None) != (kind,):
        raise MTLError(f"{where}: its Schema must be a pydantic model with kind: Literal[{kind!r}] (subclass "
                       f"TaskSchema)")
    if schema.model_config.get("extra") != "forbid":
        raise MTLError(f"{where}: its Schema must set extra='forbid' so that a misspelt key is an error")
    if not cls.summary_metrics:
        raise MTLError(f"{where}: summary_metrics is empty; name at least its primary metric")
    unknown = [m for m in (*cls.summary_metrics, *cls.beats_metrics) if m not in cls.higher_is_better]
    if unknown:
        raise MTLError(f"{where}: higher_is_better has no direction for {', '.join(unknown)}")
    for name in (cls.figure, *cls.extra_figures):
        if name is not None and name not in FIGURE_NAMES:
            raise MTLError(f"{where}: unknown figure {name!r}; use one of {', '.join(FIGURE_NAMES)} or None")


def kind_class(kind: str) -> type[Task] | None:
    """The registered class of ``kind``, or None (for display code reading a metrics.json of unknown kinds)."""
    return TASK_KINDS.get(kind) if kind in TASK_KINDS else None


@functools.lru_cache(maxsize=8)
def _adapter(schemas: tuple[type[BaseModel], ...]) -> TypeAdapter:
    """One discriminated union over every registered kind's Schema (rebuilt when the set of kinds changes)."""
    if len(schemas) == 1:
        return TypeAdapter(schemas[0])
    return TypeAdapter(Annotated[functools.reduce(operator.or_, schemas), Field(discriminator="kind")])


def task_from_schema(schema: dict[str, Any]) -> Task:
    """Rebuild a fitted task from its :meth:`Task.describe` dictionary (used by ``mtl predict``).

    Example:
        >>> task = task_from_schema({"name": "size", "kind": "regression", "weight": 1.0, "unit": "mm",
        ...                          "loss": "mse", "normalize": "standardize", "value_range": 30.0,
        ...                          "offset": 20.0, "scale": 5.0, "mean": 20.0})
        >>> type(task).__name__, task.unit
        ('RegressionTask', 'mm')
    """
    kind = schema.get("kind") if isinstance(schema, dict) else None
    if not isinstance(kind, str):
        raise MTLError(f"a task schema needs a 'kind' ({', '.join(TASK_KINDS.names())}), got {schema!r:.120}")
    try:
        cls = TASK_KINDS.get(kind)
    except MTLError as exc:
        raise MTLError(f"{exc} (a plugin's task kinds are known once the plugin is installed and loaded)") from None
    try:
        checked = _adapter(tuple(TASK_KINDS.get(k).Schema for k in TASK_KINDS.names())).validate_python(schema)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"] if p != kind) or "schema"
        raise MTLError(f"task {schema.get('name')!r} ({kind}) in the task schema: {where}: {error['msg']}") from None
    return cls.from_schema(checked.model_dump())



__all__ = [
    "FIGURE_NAMES", "TASK_KINDS", "Task", "TaskSchema", "format_target", "kind_class", "masked_mean",
    "register_task_kind", "task_from_schema"
]
