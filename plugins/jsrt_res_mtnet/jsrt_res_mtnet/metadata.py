"""Parse and validate the JSRT metadata table (``jsrt_metadata.csv``).

The table has one row per image with the columns ``study_id, subtlety, size, age, gender, x, y, state, position,
diagnosis`` (``age`` and ``gender`` may be absent: they become NaN). :func:`read_metadata` returns one row per image
with typed columns plus three derived ones:

* ``side`` (``'right'``/``'left'``) and ``lobe`` (one of :data:`LOBES`), from ``position`` such as
  ``'r.upper lobe(S2)'``. ``'left lung'``/``'right lung'`` name a side but no lobe, so ``lobe`` is NaN there.
* ``diagnosis_group`` (one of :data:`DIAGNOSIS_GROUPS`), from the free-text ``diagnosis`` through the ordered,
  case-insensitive rules in :data:`DIAGNOSIS_RULES`. A leading ``'susp.'`` (suspected) is dropped first, so a
  suspected hamartoma is grouped with hamartoma. ``'lung canceror metastasis'`` (sic) is grouped as
  ``'lung cancer'``: the reading names primary cancer first, both are malignant, and it keeps the small
  ``'metastasis'`` group to confirmed secondaries. ``'metastatic lung cancer'`` is a metastasis. A spelling no rule
  knows becomes ``'other'`` with a logged warning instead of failing, because the column is free text.

Non-nodule images have no subtlety, size, x, y, position or diagnosis: those cells are NaN, never zero.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "jsrt_metadata.csv"
    >>> _ = path.write_text(
    ...     "study_id,subtlety,size,age,gender,x,y,state,position,diagnosis\\n"
    ...     "JPCLN001.png,5,15,53,Male,1634,692,malignant,l.upper lobe,lung cancer\\n"
    ...     "JPCNN001.png,,,?,Female,,,non-nodule,,\\n")
    >>> df = read_metadata(path)
    >>> df.loc[0, ["side", "lobe", "diagnosis_group"]].tolist()
    ['left', 'left upper lobe', 'lung cancer']
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from pathlib import Path

import pandas as pd

from mtl_core import DataError

logger = logging.getLogger(__name__)

STATES = ("benign", "malignant", "non-nodule")
NODULE_STATES = ("benign", "malignant")
SIDES = ("right", "left")
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
DIAGNOSIS_GROUPS = (
    "lung cancer",
    "metastasis",
    "tuberculosis / granuloma",
    "inflammatory",
    "benign tumour",
    "other benign",
    "unknown",
    "other",  # only for spellings that no rule knows (logged)
)
# Ordered (regex, group) rules, tried in turn as a full match on the normalised text (see _normalise_diagnosis).
DIAGNOSIS_RULES: tuple[tuple[str, str], ...] = (
    (r"unknown", "unknown"),
    (r"lung cancer\s*or\s*metastasis", "lung cancer"),  # 'lung canceror metastasis' (sic): see module docstring
    (r"metastasis of .+|metastatic .+|(lung |pulmonary )?metastas[ie]s", "metastasis"),
    (r"(primary )?lung cancer(\(.+\))?", "lung cancer"),
    (r"tuberculoma|(pulmonary )?tuberculosis|(calcified )?granuloma", "tuberculosis / granuloma"),
    (r"inflammatory mass|(organizing |organiging )?pneumonia|lung abscess|cryptococcosis", "inflammatory"),
    (r"hamartoma|sclerosing hemangioma", "benign tumour"),
    (r"(pulmonary )?hematoma", "other benign"),
)
REQUIRED_COLUMNS = ("study_id", "subtlety", "size", "x", "y", "state", "position", "diagnosis")
OPTIONAL_COLUMNS = ("age", "gender")
OUTPUT_COLUMNS = (
    "study_id", "subtlety", "size", "age", "gender", "x", "y", "state",
    "position", "lobe", "side", "diagnosis", "diagnosis_group",
)  # fmt: skip
FRAME_SIZE = 2048  # x and y are pixels in the 2048 x 2048 frame

_COMPILED_RULES = tuple((re.compile(pattern), group) for pattern, group in DIAGNOSIS_RULES)
_LOBE_RE = re.compile(r"(right|left|r|l)\s*\.?\s*(upper|middle|lower)\s*lobe\b", re.IGNORECASE)
_LUNG_RE = re.compile(r"(right|left)\s+lung\b", re.IGNORECASE)
_NAN = float("nan")


def read_metadata(csv_path: str | Path) -> pd.DataFrame:
    """Read and validate the JSRT metadata table.

    Args:
        csv_path: Path to ``jsrt_metadata.csv``.

    Returns:
        One row per image, columns :data:`OUTPUT_COLUMNS`: ``subtlety``, ``size``, ``age``, ``x``, ``y`` as floats
        (NaN when empty; ``age`` also for ``'?'``), ``state`` in :data:`STATES`, and the other columns as stripped
        strings or NaN.

    Raises:
        DataError: The file is missing or empty, lacks required columns, or a cell is invalid; the message names
            the file, the line (header = line 1), the column and the value.
    """
    path = Path(csv_path)
    rows = _read_rows(path)
    records = [_parse_row(path, line, row) for line, row in rows]
    _check_duplicates(path, [line for line, _ in rows], [r["study_id"] for r in records])
    _warn_unmapped(path, [line for line, _ in rows], records)
    return pd.DataFrame.from_records(records, columns=list(OUTPUT_COLUMNS))


def nodule_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of images with a nodule (state benign or malignant)."""
    return df[df["state"].isin(NODULE_STATES)]


def diagnosis_group(diagnosis: str) -> str:
    """Map a free-text diagnosis to one of :data:`DIAGNOSIS_GROUPS` (``'other'`` when no rule matches)."""
    text = _normalise_diagnosis(diagnosis)
    return next((group for rule, group in _COMPILED_RULES if rule.fullmatch(text)), "other")


def parse_position(position: str) -> tuple[str | None, str | None]:
    """Return ``(side, lobe)`` for a JSRT position such as ``'r.upper lobe(S2)'`` or ``'left lung'``.

    Either part is None when the text does not name it (a lung names no lobe; the left lung has no middle lobe).
    """
    match = _LOBE_RE.match(position.strip())
    if match:
        side = "right" if match.group(1).lower().startswith("r") else "left"
        lobe = f"{side} {match.group(2).lower()} lobe"
        return side, lobe if lobe in LOBES else None
    match = _LUNG_RE.match(position.strip())
    return (match.group(1).lower(), None) if match else (None, None)


def _normalise_diagnosis(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip().lower())
    text = re.sub(r"\s*\(\s*", "(", text).replace(" )", ")")
    return re.sub(r"^susp(ected|\.)?\s*", "", text)


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Return ``(line number, {column: raw cell})`` for each non-blank data row."""
    if not path.is_file():
        raise DataError(
            f"metadata table {path} does not exist; expected a CSV with columns {', '.join(REQUIRED_COLUMNS)}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"metadata table {path} is not UTF-8 text (byte offset {exc.start}); save it as CSV UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"metadata table {path} is empty; expected a header line and one row per image")
    reader = csv.reader(io.StringIO(text))
    header, rows, end = None, [], 0
    try:
        for cells in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = _check_header(path, cells)
            elif len(cells) != len(header):
                raise DataError(f"{path}: line {start} has {len(cells)} fields, the header has {len(header)}; quote "
                                f"cells that contain commas (\"a, b\") and give every row one cell per column")
            else:
                rows.append((start, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({exc})") from None
    if not rows:
        raise DataError(f"metadata table {path} has a header but no data rows; add one row per image")
    return rows


def _check_header(path: Path, cells: list[str]) -> list[str]:
    header = [cell.strip().lower() for cell in cells]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise DataError(
            f"{path}: line 1 lacks column(s) {', '.join(missing)}; expected a header with "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: line 1 repeats column(s) {', '.join(repeated)}; keep one of each")
    extra = [name for name in header if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if extra:
        logger.warning("%s: ignoring extra column(s) %s", path, ", ".join(extra))
    return header


def _fail(path: Path, line: int, column: str, value: str, expected: str) -> DataError:
    return DataError(f"{path}: line {line}, column '{column}': got {value!r}, expected {expected}")


def _text(value: str | None) -> str | float:
    value = (value or "").strip()
    return value if value else _NAN


def _number(path: Path, line: int, row: dict[str, str], column: str, expected: str) -> float:
    raw = row[column].strip()
    if not raw:
        return _NAN
    try:
        value = float(raw)
    except ValueError:
        value = _NAN
    if not math.isfinite(value):
        raise _fail(path, line, column, raw, expected)
    return value


def _parse_row(path: Path, line: int, row: dict[str, str]) -> dict[str, object]:
    study_id = row["study_id"].strip()
    if not study_id:
        raise _fail(path, line, "study_id", row["study_id"], "an image file name such as 'JPCLN001.png'")
    state = _parse_state(path, line, row["state"])
    subtlety = _number(path, line, row, "subtlety", "an integer 1..5 or empty")
    if not math.isnan(subtlety) and (subtlety not in (1, 2, 3, 4, 5)):
        raise _fail(path, line, "subtlety", row["subtlety"], "an integer 1..5 or empty")
    size = _number(path, line, row, "size", "a size in mm >= 0 or empty")
    if size < 0:
        raise _fail(path, line, "size", row["size"], "a size in mm >= 0 or empty")
    x, y = (_coordinate(path, line, row, column) for column in ("x", "y"))
    if state in NODULE_STATES:
        absent = [name for name, value in (("x", x), ("y", y), ("size", size)) if math.isnan(value)]
        if absent:
            raise _fail(path, line, absent[0], row[absent[0]], f"a value: a {state} nodule needs x, y and size")
    position, diagnosis = _text(row["position"]), _text(row["diagnosis"])
    side, lobe = parse_position(position) if isinstance(position, str) else (None, None)
    return {
        "study_id": study_id,
        "subtlety": subtlety,
        "size": size,
        "age": _parse_age(path, line, row.get("age", "")),
        "gender": _text(row.get("gender")),
        "x": x,
        "y": y,
        "state": state,
        "position": position,
        "lobe": lobe or _NAN,
        "side": side or _NAN,
        "diagnosis": diagnosis,
        "diagnosis_group": diagnosis_group(diagnosis) if isinstance(diagnosis, str) else _NAN,
    }


def _parse_state(path: Path, line: int, raw: str) -> str:
    key = re.sub(r"[\s_-]+", "", raw.lower())
    for state in STATES:
        if key == state.replace("-", ""):
            return state
    raise _fail(path, line, "state", raw, f"one of {', '.join(STATES)}")


def _parse_age(path: Path, line: int, raw: str) -> float:
    raw = raw.strip()
    if raw in ("", "?"):
        return _NAN
    try:
        age = float(raw)
    except ValueError:
        age = -1.0
    if not 0 <= age < 150:
        raise _fail(path, line, "age", raw, "an age in years, '?' or empty")
    return age


def _coordinate(path: Path, line: int, row: dict[str, str], column: str) -> float:
    expected = f"a pixel coordinate in [0, {FRAME_SIZE}) or empty"
    value = _number(path, line, row, column, expected)
    if not math.isnan(value) and not 0 <= value < FRAME_SIZE:
        raise _fail(path, line, column, row[column], expected)
    return value


def _check_duplicates(path: Path, lines: list[int], study_ids: list[str]) -> None:
    """Two rows naming the same image stem (case-insensitive) would share one image file."""
    first: dict[str, tuple[int, str]] = {}
    for line, study_id in zip(lines, study_ids, strict=True):
        key = Path(study_id).stem.lower()
        if key in first:
            other_line, other = first[key]
            raise _fail(path, line, "study_id", study_id, f"a unique image; line {other_line} already has {other!r}")
        first[key] = (line, study_id)


def _warn_unmapped(path: Path, lines: list[int], records: list[dict[str, object]]) -> None:
    """Log one warning per unknown diagnosis spelling and per position without a side."""
    unmapped: dict[str, list[int]] = {}
    sideless: dict[str, list[int]] = {}
    for line, record in zip(lines, records, strict=True):
        if record["diagnosis_group"] == "other":
            unmapped.setdefault(str(record["diagnosis"]), []).append(line)
        if record["state"] in NODULE_STATES and not isinstance(record["side"], str):
            sideless.setdefault(str(record["position"]), []).append(line)
    for text, at in unmapped.items():
        logger.warning("%s: diagnosis %r (line %s) matches no diagnosis rule; grouped as 'other'", path, text, at[0])
    for text, at in sideless.items():
        logger.warning(
            "%s: position %r (line %s) names no side (right/left); side and lobe left empty", path, text, at[0]
        )
