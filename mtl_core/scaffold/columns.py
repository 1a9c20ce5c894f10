"""What a table column's values say about it: missing markers, and the kind of task it can be (or why none).

Each rule returns its reason beside its result, so that the config ``mtl init table`` writes says why it chose
what it chose. :mod:`mtl_core.scaffold.table` applies them to every column that is not the id, file or group column.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

#: cells that usually mean "no label" (compared as written; ``none`` is left alone: it is often a class)
MISSING_MARKERS = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None", "?", "-", "missing")
#: at most this many distinct texts make a classification task
MAX_CLASSES = 20
#: rare text in a numeric column is a missing marker when it is at most this share of the column's cells
RARE_TEXT = 0.2
_BINARY_WORDS = {"0": 0, "1": 1, "false": 0, "true": 1, "no": 0, "yes": 1, "n": 0, "y": 1}
_UNITS = {"px", "mm", "cm", "ml", "mg", "kg", "g", "s", "ms", "min", "h", "days", "years", "hu", "pct", "percent"}


@dataclass(frozen=True)
class Column:
    """What was decided about one column: its role (``id``, ``file``, ``group``, ``task``, ``left_out``) and why."""

    name: str
    role: str
    why: str
    task: str | None = None


def number(cell: str) -> float | None:
    """The cell as a finite number, else None (``nan`` and ``inf`` are not numbers here)."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def find_markers(frame: pd.DataFrame) -> tuple[list[str], str]:
    """(missing markers, why): ``''`` always, the usual markers present, and rare text in numeric columns."""
    found: Counter[str] = Counter()
    where: dict[str, set[str]] = {}
    for column in frame.columns:
        cells = frame[column]
        others = [cell for cell in cells if cell not in MISSING_MARKERS]
        text = Counter(cell for cell in others if number(cell) is None)
        rare = len(text) <= 2 and 0 < sum(text.values()) <= RARE_TEXT * len(others)
        for cell in cells:
            if cell in MISSING_MARKERS or (rare and cell in text):
                found[cell] += 1
                where.setdefault(cell, set()).add(column)
    markers = [""] + [m for m in MISSING_MARKERS if m and m in found]
    markers += sorted(m for m in found if m not in MISSING_MARKERS)
    if len(markers) == 1:
        return markers, "an empty cell is a missing label (no other marker found in the table)"
    shown = "; ".join(f"{m!r}: {found[m]} cell(s) in {', '.join(sorted(where[m]))}" for m in markers if m)
    return markers, f"cells read as a missing label, found in the table: {shown}"


def task_name(column: str, taken: set[str]) -> str:
    """A snake_case task name for ``column``, unique among ``taken``."""
    name = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_") or "task"
    name = name if name[0].isalpha() else f"t_{name}"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def _unit(column: str) -> tuple[str, str]:
    """(name without the unit, unit) for a column such as ``size_px``; else (column, '')."""
    head, _, tail = column.rpartition("_")
    return (head, tail.lower()) if head and tail.lower() in _UNITS else (column, "")


def _binary_words(distinct: Counter[str]) -> dict[str, Any] | None:
    """A binary declaration for cells that are all yes/no, true/false, y/n or 0/1 (any case), with both sides."""
    words = {cell.lower() for cell in distinct}
    if not words <= set(_BINARY_WORDS) or {_BINARY_WORDS[w] for w in words} != {0, 1}:
        return None
    if all(cell in ("0", "1") or cell.lower() in ("true", "false") for cell in distinct):
        return {"kind": "binary"}  # the plugin reads these itself
    mapping = {cell: ("no", "yes")[_BINARY_WORDS[cell.lower()]] for cell in distinct if cell not in ("no", "yes")}
    return {"kind": "binary", "classes": ["no", "yes"]} | ({"mapping": mapping} if mapping else {})


def _numbers(column: str, values: list[float]) -> tuple[dict[str, Any], str]:
    """A regression declaration, or binary for 0/1 only."""
    distinct = sorted(set(values))
    if set(distinct) <= {0.0, 1.0}:
        return {"kind": "binary"}, "only the values 0 and 1: binary (0 negative, 1 positive)"
    _, unit = _unit(column)
    why = f"numbers from {distinct[0]:g} to {distinct[-1]:g}: regression"
    if all(v.is_integer() for v in distinct) and len(distinct) <= 10:
        why += f" (only {len(distinct)} distinct integers: if they are grades or codes, make it a classification)"
    why += f"; unit {unit!r} from the column's name" if unit else "; set its unit"
    return {"kind": "regression", "unit": unit}, why


def kind_of(column: str, cells: pd.Series, markers: list[str]) -> tuple[dict[str, Any] | None, str]:
    """(the task declaration of the ``table`` plugin for this column, or None when it is left out; why)."""
    present = [cell for cell in cells if cell not in markers]
    if not present:
        return None, "every cell is empty or a missing marker"
    distinct = Counter(present)
    if len(distinct) == 1:
        return None, f"one value only ({next(iter(distinct))!r}): nothing to learn"
    values = [number(cell) for cell in present]
    if all(v is not None for v in values):
        return _numbers(column, values)  # type: ignore[arg-type]
    binary = _binary_words(distinct)
    if binary is not None:
        return binary, f"only the values {', '.join(sorted(distinct))}: binary"
    if any(v is not None for v in values):
        return None, "mixes numbers and text: declare it by hand (add its text markers to missing_values)"
    if len(distinct) > MAX_CLASSES or len(distinct) > len(present) / 2:
        return None, (f"{len(distinct)} distinct texts in {len(present)} labelled rows: too many for classes (at "
                      f"most {MAX_CLASSES}, and at most half the rows)")
    rare = [c for c, n in distinct.items() if n == 1]
    why = f"{len(distinct)} distinct texts in {len(present)} labelled rows: classification, classes sorted"
    why += f"; {', '.join(map(repr, sorted(rare)[:3]))} in one row only" if rare else ""
    return {"kind": "classification", "classes": sorted(distinct)}, why


def _pairs(names: list[str]) -> list[tuple[str, str, str]]:
    """(point name, x column, y column) for columns named x/y, P_x/P_y or x_P/y_P (any case)."""
    lower = {n.lower(): n for n in names}
    pairs = []
    for low, name in lower.items():
        if low == "x" and "y" in lower:
            pairs.append(("point", name, lower["y"]))
        elif low.endswith("_x") and f"{low[:-2]}_y" in lower:
            pairs.append((name[:-2], name, lower[f"{low[:-2]}_y"]))
        elif low.startswith("x_") and f"y_{low[2:]}" in lower:
            pairs.append((name[2:], name, lower[f"y_{low[2:]}"]))
    return pairs


def _point(frame: pd.DataFrame, x: str, y: str, markers: list[str],
           size: tuple[int, int] | None) -> tuple[dict[str, Any] | None, str]:
    """A point declaration when x and y are numbers inside the images' frame, missing together; else why not."""
    if size is None:
        return None, "the images' size (their frame) is unknown or differs between images"
    missing_x = frame[x].isin(markers).to_numpy()
    if (missing_x != frame[y].isin(markers).to_numpy()).any():
        return None, f"{x} and {y} are not missing in the same rows"
    points = [(number(a), number(b)) for a, b in zip(frame[x][~missing_x], frame[y][~missing_x], strict=True)]
    if not points or any(a is None or b is None or not (0 <= a <= size[0] and 0 <= b <= size[1]) for a, b in points):
        return None, f"not every {x}, {y} is a pair of numbers inside the images' {size[0]}x{size[1]} pixels"
    spec = {"kind": "point", "frame": list(size), "x_column": x, "y_column": y, "negatives": False}
    return spec, (f"{x} and {y}: coordinates inside the images' {size[0]}x{size[1]} pixels: a point task (needs "
                  f"model.pooling: map); a row without a point has a missing label (negatives: true if it has none)")


def _point_decisions(frame: pd.DataFrame, markers: list[str], size: tuple[int, int] | None,
                     numeric: list[str]) -> dict[str, tuple[str, dict[str, Any] | None, str]]:
    """Coordinate column -> (point name, its declaration or None when left out, why), for both columns of a pair."""
    pairs = _pairs(numeric)
    found = {}
    for name, x, y in pairs:
        spec, why = _point(frame, x, y, markers, size) if len(pairs) == 1 else (None, "")
        why = why if len(pairs) == 1 else f"{len(pairs)} pairs of columns look like coordinates: declare by hand"
        found[x] = found[y] = (name, spec, why)
    return found


def decide(frame: pd.DataFrame, markers: list[str],
           size: tuple[int, int] | None) -> list[tuple[Column, str | None, dict[str, Any] | None]]:
    """(column, task name, declaration) for every column of ``frame``; a left-out column has no task, nor has the
    second column of a point task (its declaration names both)."""
    kinds = {column: kind_of(column, frame[column], markers) for column in frame.columns}
    numeric = [c for c, (spec, _) in kinds.items() if spec is not None and spec["kind"] == "regression"]
    points = _point_decisions(frame, markers, size, numeric)
    taken: dict[str, str] = {}  # task name -> its first column (for a point: the pair's name -> task name too)
    out: list[tuple[Column, str | None, dict[str, Any] | None]] = []
    for column in frame.columns:
        spec, why = kinds[column]
        if column in points:
            pair, spec, why = points[column]
            if spec is None:
                out.append((Column(column, "left_out", f"looks like a coordinate, but {why}"), None, None))
                continue
            if f"point:{pair}" in taken:  # the pair's second column: its task is declared already
                out.append((Column(column, "task", why, task=taken[f"point:{pair}"]), None, None))
                continue
            name = task_name(pair, set(taken))
            taken[f"point:{pair}"] = name
        elif spec is None:
            out.append((Column(column, "left_out", why), None, None))
            continue
        else:
            name = task_name(_unit(column)[0] if spec.get("unit") else column, set(taken))
            spec = spec | ({"column": column} if name != column else {})
        taken[name] = column
        out.append((Column(column, "task", why, task=name), name, spec))
    return out
