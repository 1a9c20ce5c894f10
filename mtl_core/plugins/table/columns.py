"""Turn the cells of table columns into a task's targets: class indices, scaled values or points, NaN where missing.

All cells arrive as text (``pandas.read_csv(dtype=str)``). A cell is missing when its task's condition does not
hold or it is one of the missing markers; otherwise it must be a label the task knows, or the error names the
table, the line, the column and the value.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd

from ...errors import DataError
from .options import (
    BinarySpec,
    Condition,
    PointSpec,
    RegressionSpec,
    Scalar,
    StratumSpec,
    _LabelledSpec,
    _TaskSpec,
    canonical,
)

log = logging.getLogger(__name__)
#: ``where(row)`` -> "labels.csv: line 7" (CSV) or "labels.parquet: row 6": how errors name a row.
Where = Callable[[int], str]
_BINARY_DEFAULTS = {"0.0": 0, "1.0": 1, "false": 0, "true": 1}


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip())


class ClassLookup:
    """Raw cell -> class index, through a class name, the mapping, then the first matching pattern."""

    def __init__(self, spec: _LabelledSpec) -> None:
        self.classes = spec.class_names()
        self._exact: dict[str, int | None] = dict(_BINARY_DEFAULTS) if isinstance(spec, BinarySpec) else {}
        self._exact.update({canonical(c): i for i, c in enumerate(self.classes)})
        self._exact.update({canonical(raw): None if label is None else self.classes.index(label)
                            for raw, label in spec.mapping.items()})
        self._patterns = [(re.compile(rule.match, re.IGNORECASE | re.DOTALL),
                           None if rule.label is None else self.classes.index(rule.label)) for rule in spec.patterns]

    def index(self, cell: str) -> tuple[bool, int | None]:
        """``(known, index)``: whether the cell is a known label, and its class index (None: missing)."""
        key = canonical(cell)
        if key in self._exact:
            return True, self._exact[key]
        text = _collapse(cell)
        for pattern, index in self._patterns:
            if pattern.fullmatch(text):
                return True, index
        return False, None


def _accepted(spec: _LabelledSpec, lookup: ClassLookup) -> str:
    """What a label cell may hold, for a message: the class names, a binary task's 0/1/true/false, the keys of
    ``mapping`` and ``patterns``, and how to accept the rejected cell."""
    accepted = [*lookup.classes, *(["0", "1", "true", "false"] if isinstance(spec, BinarySpec) else []),
                *(str(k) for k in spec.mapping)]
    shown = ", ".join(repr(a) for a in dict.fromkeys(accepted))
    example = lookup.classes[-1]
    return (f"accepted: {shown}{' or a `patterns` match' if spec.patterns else ''}; map other cells to a class "
            f"with `mapping` (e.g. mapping: {{'yes': {example!r}}}), or set unknown: missing")


def applies(frame: pd.DataFrame, condition: Condition | None) -> np.ndarray:
    """Boolean (N,): where the task's condition holds (everywhere without one)."""
    if condition is None:
        return np.ones(len(frame), dtype=bool)
    wanted = {canonical(v) for v in condition.values}
    return np.array([canonical(cell) in wanted for cell in frame[condition.column]], dtype=bool)


def missing_cells(cells: pd.Series, markers: list[Scalar]) -> np.ndarray:
    """Boolean (N,): cells that are one of the missing markers (compared in :func:`canonical` form)."""
    wanted = {canonical(m) for m in markers}
    return np.array([canonical(cell) in wanted for cell in cells], dtype=bool)


def encode_task(name: str, spec: _TaskSpec, frame: pd.DataFrame, markers: list[Scalar], where: Where) -> np.ndarray:
    """Targets of task ``name``, NaN where the label is missing: class indices or values (N,) float64, or the
    points of a point task (N, 2|3)."""
    markers = spec.missing if spec.missing is not None else markers
    if isinstance(spec, PointSpec):
        return _points(name, spec, frame, markers, where)
    column = spec.label_columns(name)[0]
    cells = frame[column]
    labelled = applies(frame, spec.when) & ~missing_cells(cells, markers)
    if isinstance(spec, RegressionSpec):
        return _numbers(name, column, cells, labelled, where) * spec.scale + spec.offset
    return _classes(name, column, spec, cells, labelled, where)  # type: ignore[arg-type]


def _numbers(name: str, column: str, cells: pd.Series, labelled: np.ndarray, where: Where) -> np.ndarray:
    """The labelled cells as finite floats, NaN elsewhere."""
    out = np.full(len(cells), np.nan)
    for row in np.flatnonzero(labelled):
        raw = cells.iloc[row]
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{where(row)}, column {column!r} (task {name!r}): got {raw!r}, expected a finite "
                            f"number or a missing marker; add it to the task's `missing` if it means no label")
        out[row] = value
    return out


def _points(name: str, spec: PointSpec, frame: pd.DataFrame, markers: list[Scalar], where: Where) -> np.ndarray:
    """(N, 2|3): x and y inside the frame (both given or both missing), then the extent (>= 0) where given."""
    applied = applies(frame, spec.when)
    columns = list(spec.point_columns().values())
    values = [_numbers(name, c, frame[c], applied & ~missing_cells(frame[c], markers), where) for c in columns]
    for axis, limit in enumerate(spec.frame):
        outside = np.flatnonzero((values[axis] < 0) | (values[axis] > limit))
        if len(outside):
            row, column = int(outside[0]), columns[axis]
            raise DataError(f"{where(row)}, column {column!r} (task {name!r}): {frame[column].iloc[row]!r} lies "
                            f"outside the frame (0 to {limit:g} {spec.unit}); give coordinates in the frame's "
                            f"units, or set the task's `frame`")
    half = np.flatnonzero(np.isnan(values[0]) != np.isnan(values[1]))
    if len(half):
        row = int(half[0])
        given, lacking = (columns[0], columns[1]) if np.isnan(values[1][row]) else (columns[1], columns[0])
        raise DataError(f"{where(row)}, column {lacking!r} (task {name!r}): no value beside {given!r} "
                        f"{frame[given].iloc[row]!r}; a point needs both coordinates (or mark both missing)")
    if len(values) == 3 and (values[2] < 0).any():
        row = int(np.flatnonzero(values[2] < 0)[0])
        raise DataError(f"{where(row)}, column {columns[2]!r} (task {name!r}): got {frame[columns[2]].iloc[row]!r}, "
                        f"expected an extent >= 0 or a missing marker")
    return np.stack(values, axis=1)


def _classes(name: str, column: str, spec: _LabelledSpec, cells: pd.Series, labelled: np.ndarray,
             where: Where) -> np.ndarray:
    lookup = ClassLookup(spec)
    out = np.full(len(cells), np.nan)
    unknown: Counter[str] = Counter()
    for row in np.flatnonzero(labelled):
        raw = cells.iloc[row]
        known, index = lookup.index(raw)
        if not known and spec.unknown == "error":
            raise DataError(f"{where(row)}, column {column!r} (task {name!r}): unknown label {raw!r}; "
                            f"{_accepted(spec, lookup)}")
        if not known:
            unknown[raw] += 1
        out[row] = math.nan if index is None else index
    if unknown:
        shown = ", ".join(f"{value!r} ({count})" for value, count in unknown.most_common(3))
        log.warning("task %r: %d cell(s) of column %r match no class and are treated as missing: %s%s", name,
                    sum(unknown.values()), column, shown, ", ..." if len(unknown) > 3 else "")
    return out


def stratum_values(spec: StratumSpec, frame: pd.DataFrame, markers: list[Scalar], where: Where) -> np.ndarray:
    """Label per case (object (N,)): the cell's text, its `mapping` label or its bin's label; "" where missing."""
    cells = frame[spec.column]
    missing = missing_cells(cells, markers)
    mapping = {canonical(k): v for k, v in spec.mapping.items()}
    out = np.empty(len(cells), dtype=object)
    for row, cell in enumerate(cells):
        if missing[row]:
            out[row] = ""
        elif spec.bins is None:
            out[row] = mapping.get(canonical(cell), cell.strip())
        else:
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{where(row)}, column {spec.column!r} (stratum {spec.key!r}): got {cell!r}, "
                                f"expected a number to bin, or a missing marker") from None
            out[row] = spec.labels[int(np.digitize(value, spec.bins))]  # type: ignore[index]
    return out
