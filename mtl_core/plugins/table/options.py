"""Options of the ``table`` plugin: where the table and images are, and one declaration per task.

Every model is a frozen :class:`~mtl_core.config.Strict` model (``extra="forbid"``); the task declarations are a
discriminated union on ``kind``, so an error names the branch (``tasks.size.regression.unit: ...``). The defaults
describe the synthetic shapes data set that ``mtl synthesize table OUT --option kind=shapes`` writes, so the plugin
builds and lists without any option.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ...config import LabelSmoothing, Strict
from ...registry import SNAKE_CASE, is_snake_case

Scalar = str | int | float | bool
#: Cells that mean "no label" unless a task or the table says otherwise.
MISSING_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "None", "?"]


def canonical(value: Any) -> str:
    """The form in which cells and configured values are compared: stripped text, numbers as floats.

    ``1``, ``"1"`` and ``"1.0"`` all become ``"1.0"``; ``True`` and ``"TRUE"`` become ``"true"``; other text is only
    stripped (comparison is case-sensitive).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        return repr(float(text))
    except ValueError:
        return text


class Condition(Strict):
    """The task applies only where another column holds one of ``values``; elsewhere its label is missing."""

    column: str = Field(..., description="column to look at")
    values: list[Scalar] = Field(..., min_length=1, description="values of `column` where the task applies")


class PatternRule(Strict):
    """Raw values that fully match ``match`` (case-insensitive, whitespace collapsed) get ``label``."""

    match: str = Field(..., description="a Python regular expression that must match the whole cell")
    label: str | None = Field(..., description="the class it means; null: the label is missing")

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        return value


class _TaskSpec(Strict):
    """What every task declaration has."""

    weight: float = Field(1.0, ge=0.0, description="static loss weight")
    missing: list[Scalar] | None = Field(None, description="cells meaning 'no label'; default: `missing_values`")
    when: Condition | None = Field(None, description="the task applies only where this condition holds")

    def label_columns(self, name: str) -> list[str]:
        """The table columns that task ``name`` reads."""
        raise NotImplementedError


class _ColumnSpec(_TaskSpec):
    """Declarations of tasks whose label is one column."""

    column: str | None = Field(None, description="column holding the label; default: the task's name")

    def label_columns(self, name: str) -> list[str]:
        """The label column: ``column``, else the task's name."""
        return [self.column or name]


class _LabelledSpec(_ColumnSpec):
    """Declarations of tasks whose labels are classes."""

    classes: list[str] | None = Field(None, description="class names in head order; default: the labels of "
                                                         "`mapping`, then of `patterns`, in order of appearance")
    mapping: dict[str, str | None] = Field(default_factory=dict, description="raw cell -> class name (null: "
                                                                              "missing); a class name maps to itself")
    patterns: list[PatternRule] = Field(default_factory=list, description="ordered rules for cells that neither "
                                                                          "`mapping` nor a class name matches")
    unknown: Literal["error", "missing"] = Field("error", description="a cell that no class, mapping or pattern "
                                                                      "matches: stop with an error, or treat it "
                                                                      "as missing (logged)")

    @field_validator("mapping", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    def class_names(self) -> list[str]:
        """The classes, in head order."""
        if self.classes is not None:
            return list(self.classes)
        labels = list(self.mapping.values()) + [rule.label for rule in self.patterns]
        return list(dict.fromkeys(label for label in labels if label is not None))

    @model_validator(mode="after")
    def _labels_are_classes(self) -> _LabelledSpec:
        names = self.class_names()
        labels = [v for v in self.mapping.values() if v is not None] + [r.label for r in self.patterns if r.label]
        stray = [label for label in labels if label not in names]
        if stray:
            raise ValueError(f"label {stray[0]!r} is not one of the classes {names}; add it to `classes`")
        return self


class ClassificationSpec(_LabelledSpec):
    """A multi-class task (softmax cross-entropy with optional label smoothing)."""

    kind: Literal["classification"] = Field(..., description="selects this kind of task")
    label_smoothing: LabelSmoothing = Field(0.0, description="epsilon of (1 - eps) * one_hot + eps / K")

    @model_validator(mode="after")
    def _two_classes(self) -> ClassificationSpec:
        if len(self.class_names()) < 2 or len(set(self.class_names())) != len(self.class_names()):
            raise ValueError(f"expected at least 2 distinct classes, got {self.class_names()}: list them in "
                             f"`classes` or give a `mapping` to them")
        return self


class BinarySpec(_LabelledSpec):
    """A two-class task (BCE with logits); 0/1 and true/false cells are read as negative/positive."""

    kind: Literal["binary"] = Field(..., description="selects this kind of task")
    classes: list[str] | None = Field(None, min_length=2, max_length=2,
                                      description="[negative, positive] names; default ['negative', 'positive']")
    pos_weight: float | None = Field(None, gt=0.0, description="weight of positive cases in the BCE loss")

    def class_names(self) -> list[str]:
        """[negative, positive]."""
        return list(self.classes) if self.classes is not None else ["negative", "positive"]


class RegressionSpec(_ColumnSpec):
    """A scalar target; the value used is ``cell * scale + offset``, in ``unit``."""

    kind: Literal["regression"] = Field(..., description="selects this kind of task")
    unit: str = Field("", description="unit of the scaled value, shown in reports ('mm', 'px')")
    scale: float = Field(1.0, description="multiplies the cell (e.g. a pixel spacing to turn pixels into mm)")
    offset: float = Field(0.0, description="added after scaling")
    value_range: float | None = Field(None, gt=0.0, description="span that scales errors to [0, 1] in reports; "
                                                                "default: the training range")
    loss: Literal["mse", "l1", "huber"] = Field("mse", description="loss on the normalised target")
    normalize: Literal["standardize", "minmax", "none"] = Field("standardize", description="target normalisation, "
                                                                                           "fit on the training part")


class PointSpec(_TaskSpec):
    """A location (x, y) in a frame such as the original image's pixels, with an optional extent read there.

    The targets are (N, 2) ``x, y`` or (N, 3) with the extent, from two or three columns; a row without a point
    (its condition does not hold, or its x and y are missing markers) is a negative where ``negatives`` holds.
    The model needs ``model.pooling: map``.
    """

    kind: Literal["point"] = Field(..., description="selects this kind of task")
    frame: tuple[float, float] = Field(..., description="width and height of the coordinate frame, in `unit` "
                                                        "(e.g. [2048, 2048] pixels of the original image); "
                                                        "origin top left, y down")
    unit: str = Field("px", description="unit of x and y, shown in reports")
    axes: tuple[str, str] = Field(("x", "y"), description="names of the x and y entries in metrics.json and "
                                                          "predictions.csv")
    x_column: str | None = Field(None, description="column of the x coordinate; default: the first axis name")
    y_column: str | None = Field(None, description="column of the y coordinate; default: the second axis name")
    extent: str | None = Field(None, description="name of the extent entry (e.g. 'size'); null: a point only")
    extent_column: str | None = Field(None, description="column of the extent; default: `extent`")
    extent_unit: str = Field("", description="unit of the extent ('mm')")
    extent_scale: float | None = Field(None, gt=0.0, description="frame units per extent unit (pixels per mm): "
                                                                  "a point within one extent of the truth is a "
                                                                  "hit; null: within `hit_radius`")
    hit_radius: float | None = Field(None, gt=0.0, description="distance in frame units that counts as a hit "
                                                               "without `extent_scale`; default: 5% of the "
                                                               "frame's diagonal")
    negatives: bool = Field(True, description="a row without a point is known to have none (it teaches the "
                                              "heatmap where nothing is); false: its label is only missing")

    @model_validator(mode="after")
    def _consistent(self) -> PointSpec:
        if min(self.frame) <= 0:
            raise ValueError(f"frame must be two positive sizes (width, height), got {list(self.frame)}")
        names = [*self.axes] + ([self.extent] if self.extent is not None else [])
        if len(set(names)) != len(names):
            raise ValueError(f"axes {list(self.axes)} and extent {self.extent!r} must be distinct names")
        if self.extent is None and (self.extent_column is not None or self.extent_scale is not None):
            raise ValueError("`extent_column` and `extent_scale` describe the extent: name it in `extent` too")
        return self

    def point_columns(self) -> dict[str, str]:
        """Entry name -> column: the two axes, then the extent when there is one."""
        out = {self.axes[0]: self.x_column or self.axes[0], self.axes[1]: self.y_column or self.axes[1]}
        if self.extent is not None:
            out[self.extent] = self.extent_column or self.extent
        return out

    def label_columns(self, name: str) -> list[str]:
        """The x and y columns, and the extent's."""
        return list(self.point_columns().values())


TASK_SPEC_KINDS = ("classification", "binary", "regression", "point")


def _known_kind(value: Any) -> Any:
    """A task declaration without ``kind``, or with an unknown one, as one line that lists the kinds (pydantic's
    own says "Unable to extract tag using discriminator 'kind'")."""
    if isinstance(value, dict) and value.get("kind") not in TASK_SPEC_KINDS:
        kinds = ", ".join(TASK_SPEC_KINDS)
        if "kind" not in value:
            raise PydanticCustomError("task_kind", "missing 'kind'; use one of {kinds}", {"kinds": kinds})
        raise PydanticCustomError("task_kind", "unknown kind {kind}; use one of {kinds}",
                                  {"kind": repr(value["kind"])[:80], "kinds": kinds})
    return value


TaskSpec = Annotated[ClassificationSpec | BinarySpec | RegressionSpec | PointSpec, Field(discriminator="kind"),
                     BeforeValidator(_known_kind)]


class StratumSpec(Strict):
    """A stratum for the split and the per-stratum breakdowns: a column's values, relabelled or binned."""

    column: str = Field(..., description="column to read")
    name: str | None = Field(None, description="name of the stratum in reports; default: the column")
    mapping: dict[str, str] = Field(default_factory=dict, description="raw cell -> label (others keep their text)")
    bins: list[float] | None = Field(None, min_length=1, description="ascending edges that bin a numeric column")
    labels: list[str] | None = Field(None, description="one label per bin: len(bins) + 1 of them")

    @field_validator("mapping", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _bins_and_labels(self) -> StratumSpec:
        if self.bins is None:
            if self.labels is not None:
                raise ValueError("`labels` name the bins of `bins`; give both or neither")
            return self
        if self.mapping:
            raise ValueError("give `mapping` or `bins`, not both")
        if any(b >= c for b, c in zip(self.bins, self.bins[1:], strict=False)):
            raise ValueError(f"bins must be strictly ascending, got {self.bins}")
        if self.labels is None or len(self.labels) != len(self.bins) + 1:
            raise ValueError(f"{len(self.bins)} bin edge(s) need {len(self.bins) + 1} labels, got {self.labels}")
        return self

    @property
    def key(self) -> str:
        """The stratum's name."""
        return self.name or self.column


class ShapesOptions(Strict):
    """The synthetic shapes data set: 0-3 discs, squares or triangles per image, with their count and size."""

    kind: Literal["shapes"] = Field("shapes", description="the generator (the only one so far)")
    n: int = Field(160, ge=12, le=100_000, description="number of images")
    size: int = Field(64, ge=32, le=1024, description="image side in pixels")
    seed: int = Field(0, description="the same seed writes byte-identical files")
    missing_fraction: float = Field(0.08, ge=0.0, lt=1.0, description="share of shape labels written as '?'")


def _shapes_tasks() -> dict[str, Any]:
    """The tasks of the shapes data set (as raw declarations: validated like a config's, and shown in the docs)."""
    return {
        "shape": {"kind": "classification", "classes": ["none", "disc", "square", "triangle"], "label_smoothing": 0.1},
        "count": {"kind": "regression", "unit": "shapes"},
        "size": {"kind": "regression", "column": "size_px", "unit": "mm", "scale": 0.5,
                 "when": {"column": "shape", "values": ["disc", "square", "triangle"]}},
    }


class TableOptions(Strict):
    """Options of the ``table`` plugin: any image folder plus a CSV or Parquet table."""

    table: str = Field("labels.csv", description="the table, relative to the data folder (.csv, .tsv, .parquet)")
    images: str = Field("images", description="the image folder, relative to the data folder ('.' for itself)")
    id_column: str = Field("id", description="unique case identifier")
    file_column: str | None = Field("file", description="image file name relative to `images` (found by stem "
                                                        "with any supported suffix when not exact); null: the id")
    group_column: str | None = Field(None, description="patient or group key per case (Records.groups)")
    stratify: str | None = Field(None, description="stratum (a name in `strata`, else a column) whose values "
                                                   "the split keeps in proportion; null: a random split")
    strata: list[StratumSpec] = Field(default_factory=list, description="strata for per-stratum breakdowns in "
                                                                        "the report: a column name, or a column "
                                                                        "relabelled or binned")
    missing_values: list[Scalar] = Field(default_factory=lambda: list(MISSING_VALUES),
                                         description="cells meaning 'no label' for every task without `missing`")
    tasks: dict[str, TaskSpec] = Field(default_factory=_shapes_tasks, min_length=1, validate_default=True,
                                       description="task name -> declaration, in head order (default: the tasks "
                                                   "of the synthetic shapes data set)")
    synthetic: ShapesOptions | None = Field(None, description="data set to generate when no data folder exists")

    @field_validator("strata", mode="before")
    @classmethod
    def _column_names(cls, value: Any) -> Any:
        return [{"column": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @field_validator("tasks")
    @classmethod
    def _snake_case(cls, tasks: dict[str, Any]) -> dict[str, Any]:
        for name in tasks:
            if not is_snake_case(name):
                raise ValueError(f"task name {name!r} is not snake_case ({SNAKE_CASE.pattern}: a-z, 0-9, _, "
                                 f"starting with a letter)")
        return tasks
