"""Label tables for the synthetic JSRT phantom: synthesis, parsing and CSV output.

The frequencies below were counted once from the real 247-row ``jsrt_metadata.csv`` and are embedded so the phantom
never needs the real table. Counts are turned into labels by *quota* (largest remainder), not by sampling: with the
default 154 nodules and 93 non-nodules every marginal (subtlety per state, state, size per state, position,
diagnosis per state, gender per state, age) equals the real one exactly; the seed only decides which row gets which
label. ``x, y`` are drawn inside the box that the real nodules of the same position occupy, so side and lobe agree
with the coordinates (x grows towards the patient's left: the right lung is at x < 1024).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtl_core import DataError

COLUMNS = ("study_id", "subtlety", "size", "age", "gender", "x", "y", "state", "position", "diagnosis")
FRAME_SIZE = 2048  # x, y are pixels of the 2048 x 2048 frame
NODULE_STATES = ("malignant", "benign")

STATE_COUNTS = {"malignant": 100, "benign": 54}
SUBTLETY_COUNTS = {"malignant": (13, 18, 34, 28, 7), "benign": (12, 11, 16, 10, 5)}  # subtlety 1..5
SIZE_COUNTS = {  # nodule diameter in mm -> count
    "malignant": "6:1 7:1 8:1 10:10 11:1 12:9 13:3 14:1 15:17 16:3 17:2 18:8 20:16 21:4 22:3 23:1 25:3 26:1 27:1 "
    "28:2 30:8 32:1 35:1 37:1 60:1",
    "benign": "5:1 8:4 9:2 10:11 11:2 12:4 13:3 14:6 15:6 18:2 20:5 23:1 25:2 28:3 30:2",
}
DIAGNOSIS_COUNTS = {
    "malignant": {
        "lung cancer": 56, "lung cancer(adenocarcinoma)": 23, "lung cancer(bronchioloalveolar cell carcinoma)": 7,
        "metastasis of colon cancer": 4, "lung cancer(squamous cell carcinoma)": 2,
        "lung cancer(small cell carcinoma)": 1, "lung canceror metastasis": 1,
        "lung cancer(adenosquamous carcinoma)": 1, "lung cancer(large cell carcinoma)": 1,
        "metastatic lung cancer": 1, "metastasis of ovarian cancer": 1, "metastasis of uterine cancer": 1,
        "susp. lung metastasis": 1,
    },
    "benign": {
        "tuberculoma": 14, "granuloma": 8, "unknown": 4, "inflammatory mass": 4, "pulmonary tuberculosis": 3,
        "pulmonary hematoma": 2, "Inflammatory mass": 2, "hamartoma": 2, "lung abscess": 2, "Cryptococcosis": 2,
        "susp. inflammatory mass": 2, "sclerosing hemangioma": 2, "susp. sclerosing hemangioma": 1,
        "organiging pneumonia": 1, "susp.tuberculoma": 1, "calcified granuloma": 1, "pneumonia": 1,
        "organizing pneumonia": 1, "susp. hamartoma": 1,
    },
}  # fmt: skip
# position -> (count, x_min, x_max, y_min, y_max) of the real nodules with that position (2048 frame).
POSITIONS = {
    "r.upper lobe(S2)": (16, 393, 848, 303, 746), "r.upper lobe(S1)": (15, 504, 794, 238, 688),
    "r.upper lobe": (13, 377, 725, 389, 1045), "r.lower lobe(S6)": (10, 393, 836, 758, 1057),
    "left lung": (9, 1340, 1733, 627, 1524), "l.upper lobe(S1+2)": (8, 1303, 1618, 244, 602),
    "l.upper lobe": (7, 1409, 1692, 315, 692), "r.upper lobe(S3)": (7, 401, 594, 586, 893),
    "r.middle lobe(S4)": (7, 332, 631, 950, 1364), "l.upper lobe(S3)": (6, 1430, 1647, 410, 864),
    "r.lower lobe": (6, 246, 893, 938, 1405), "l.lower lobe(S6)": (6, 1335, 1720, 930, 1163),
    "l.lower lobe(S10)": (6, 1180, 1597, 1282, 1593), "l.lower lobe": (6, 1390, 1733, 864, 1507),
    "r.middle lobe": (5, 466, 549, 812, 1147), "l.upper lobe(S4)": (5, 1446, 1708, 832, 1085),
    "r.lower lobe(S9)": (3, 410, 541, 1004, 1696), "right lung": (3, 414, 537, 995, 1356),
    "r.lower lobe(S10)": (3, 528, 737, 1471, 1630), "l.upper lobe(S5)": (2, 1593, 1614, 1090, 1270),
    "r.lower lobe(S8)": (2, 268, 614, 1136, 1376), "r.lower lobe(S7)": (2, 438, 940, 1062, 1413),
    "l.lower lobe(S8)": (2, 1544, 1651, 942, 1409), "r.lower lobe(S9-10)": (1, 451, 451, 1339, 1339),
    "r.upper lobe(S2-S3)": (1, 582, 582, 569, 569), "r.middle lobe(S5)": (1, 733, 733, 1233, 1233),
    "l.lower lobe(S9)": (1, 1778, 1778, 1147, 1147), "l.lower lobe(S6-S8)": (1, 1606, 1606, 1065, 1065),
}  # fmt: skip
GENDER_COUNTS = {"nodule": {"Female": 86, "Male": 68}, "non-nodule": {"Female": 42, "Male": 51}}
AGE_COUNTS = (
    "16:2 21:2 24:1 25:1 27:1 28:1 30:2 31:1 32:1 33:1 34:1 35:5 37:4 39:5 41:5 42:2 43:2 44:4 45:1 46:6 47:6 48:3 "
    "49:4 50:6 51:5 52:6 53:8 54:6 55:2 56:1 57:6 58:7 59:12 60:4 61:7 62:9 63:9 64:10 65:5 66:4 67:3 68:11 69:8 "
    "70:10 71:2 72:5 73:5 74:3 75:7 76:8 77:1 78:6 79:2 80:2 81:1 83:1 84:1 89:1 ?:2"
)
BOX_MARGIN = 40  # px widening of each position box (a single real nodule gives a box of one point)
MAX_ROWS = 999  # the ids have three digits
SIZE_SUBTLETY_NOISE = 5.0  # pairs sizes with subtlety at a rank correlation ~0.25, as in the real table


@dataclass(frozen=True)
class PhantomCase:
    """What the renderer needs from one table row (``x, y`` in the 2048 frame, ``size_mm`` the diameter)."""

    study_id: str
    has_nodule: bool
    x: float = 0.0
    y: float = 0.0
    size_mm: float = 0.0
    subtlety: int = 0
    malignant: bool = False
    female: bool = False


def synthesize_metadata(
    n_nodule: int, n_non_nodule: int, rng: np.random.Generator, suffix: str = ".png"
) -> pd.DataFrame:
    """Build a JSRT-like table with ``n_nodule`` JPCLN rows then ``n_non_nodule`` JPCNN rows.

    Args:
        n_nodule: Number of nodule images (0..999).
        n_non_nodule: Number of nodule-free images (0..999).
        rng: Source of randomness (which row gets which label, and the x, y draws).
        suffix: File extension of the study ids, with the dot.

    Returns:
        A DataFrame with the columns :data:`COLUMNS`, typed as ``pandas.read_csv`` reads the real table: numbers
        as floats with NaN for absent labels, ``age`` as text (``'?'`` when unknown).

    Raises:
        DataError: A count is negative, above 999, or both are zero.
    """
    for name, n in (("n_nodule", n_nodule), ("n_non_nodule", n_non_nodule)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n <= MAX_ROWS:
            raise DataError(f"{name} must be an integer in 0..{MAX_ROWS}, got {n!r}")
    if n_nodule + n_non_nodule == 0:
        raise DataError("n_nodule and n_non_nodule are both 0; ask for at least one image")
    rows = _nodule_rows(int(n_nodule), rng) + [{"state": "non-nodule"} for _ in range(n_non_nodule)]
    ages = _shuffled(_parse_counts(AGE_COUNTS), len(rows), rng)
    genders = np.concatenate(
        [_shuffled(GENDER_COUNTS[group], n, rng) for group, n in (("nodule", n_nodule), ("non-nodule", n_non_nodule))]
    )
    ids = [f"JPCLN{i + 1:03d}{suffix}" for i in range(n_nodule)] + [
        f"JPCNN{i + 1:03d}{suffix}" for i in range(n_non_nodule)
    ]
    for row, study_id, age, gender in zip(rows, ids, ages, genders, strict=True):
        row.update(study_id=study_id, age=str(age), gender=str(gender))
    return pd.DataFrame.from_records(rows, columns=list(COLUMNS))


def _nodule_rows(n: int, rng: np.random.Generator) -> list[dict]:
    states = _shuffled(STATE_COUNTS, n, rng)
    rows: list[dict] = [{} for _ in range(n)]
    for state in NODULE_STATES:
        index = np.flatnonzero(states == state)
        subtlety = _shuffled(dict(zip(range(1, 6), SUBTLETY_COUNTS[state], strict=True)), len(index), rng)
        sizes = np.sort(_quota(_parse_counts(SIZE_COUNTS[state]), len(index)).astype(int))
        # Pair larger nodules with more obvious ones (rank correlation ~0.25 in the real table).
        order = np.argsort(subtlety + rng.normal(0.0, SIZE_SUBTLETY_NOISE, len(index)), kind="stable")
        diagnosis = _shuffled(DIAGNOSIS_COUNTS[state], len(index), rng)
        for k, i in enumerate(index):
            rows[i] = {"state": state, "subtlety": int(subtlety[k]), "diagnosis": str(diagnosis[k])}
        for size, k in zip(sizes, order, strict=True):
            rows[index[k]]["size"] = int(size)
    positions = _shuffled({name: value[0] for name, value in POSITIONS.items()}, n, rng)
    for row, position in zip(rows, positions, strict=True):
        row.update(position=str(position), **_draw_xy(str(position), rng))
    return rows


def _draw_xy(position: str, rng: np.random.Generator) -> dict[str, int]:
    """Draw x, y inside the (widened) box of the real nodules at ``position``; triangular, peaked mid-box."""
    _, x0, x1, y0, y1 = POSITIONS[position]
    x = (x0 - BOX_MARGIN) + (x1 - x0 + 2 * BOX_MARGIN) * rng.uniform(size=2).mean()
    y = (y0 - BOX_MARGIN) + (y1 - y0 + 2 * BOX_MARGIN) * rng.uniform(size=2).mean()
    return {"x": int(round(x)), "y": int(round(y))}


def _parse_counts(text: str) -> dict[str, int]:
    return {key: int(count) for key, count in (item.split(":") for item in text.split())}


def _quota(counts: Mapping, n: int) -> np.ndarray:
    """Return ``n`` labels whose frequencies follow ``counts`` (largest-remainder rounding, ties by order)."""
    keys = list(counts)
    weights = np.array([counts[k] for k in keys], dtype=float)
    exact = weights / weights.sum() * n
    whole = np.floor(exact).astype(int)
    extra = np.argsort(-(exact - whole), kind="stable")[: n - whole.sum()]
    whole[extra] += 1
    return np.array([k for k, m in zip(keys, whole, strict=True) for _ in range(m)], dtype=object)


def _shuffled(counts: Mapping, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(_quota(counts, n))


def case_from_row(row: Mapping) -> PhantomCase:
    """Read the renderer's inputs from one metadata row (a dict or a pandas Series).

    A row has a nodule when its ``state`` is benign or malignant; it then needs ``x, y`` inside the 2048 frame, a
    positive ``size`` (mm) and ``subtlety`` 1..5. A ``non-nodule`` row must have no ``x, y``.

    Raises:
        DataError: The row is inconsistent or a value is out of range; the message names the study and the column.
    """
    study_id = str(row.get("study_id", "?"))
    state = str(row.get("state", "")).strip().lower()
    female = str(row.get("gender", "")).strip().lower().startswith("f")
    x, y = _number(row, "x", study_id), _number(row, "y", study_id)
    if state == "non-nodule":
        if x is not None or y is not None:
            raise DataError(f"{study_id}: state is 'non-nodule' but x, y = {x}, {y}; leave x and y empty")
        return PhantomCase(study_id, has_nodule=False, female=female)
    if state not in NODULE_STATES:
        raise DataError(f"{study_id}: state {state!r} is not one of malignant, benign, non-nodule")
    if x is None or y is None or not (0 <= x < FRAME_SIZE and 0 <= y < FRAME_SIZE):
        raise DataError(f"{study_id}: a {state} nodule needs x, y in 0..{FRAME_SIZE - 1}, got {x}, {y}")
    size_mm, subtlety = _number(row, "size", study_id), _number(row, "subtlety", study_id)
    if size_mm is None or not 0 < size_mm <= 100:
        raise DataError(f"{study_id}: nodule size must be in (0, 100] mm, got {size_mm}")
    if subtlety not in (1, 2, 3, 4, 5):
        raise DataError(f"{study_id}: subtlety must be an integer 1..5, got {subtlety}")
    return PhantomCase(study_id, True, x, y, size_mm, int(subtlety), state == "malignant", female)


def _number(row: Mapping, column: str, study_id: str) -> float | None:
    value = row.get(column)
    if _is_missing(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{study_id}: column '{column}' holds {value!r}, expected a number or an empty cell") from None
    if not math.isfinite(number):
        raise DataError(f"{study_id}: column '{column}' holds {value!r}, expected a finite number")
    return number


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def check_metadata(metadata: pd.DataFrame) -> list[PhantomCase]:
    """Validate a metadata table for rendering and return one :class:`PhantomCase` per row.

    Raises:
        DataError: It is not a DataFrame, is empty, lacks a column, repeats a study id, or a row is invalid.
    """
    if not isinstance(metadata, pd.DataFrame) or metadata.empty:
        raise DataError(f"metadata must be a non-empty pandas DataFrame, got {type(metadata).__name__}")
    missing = [column for column in ("study_id", "state", "x", "y", "size", "subtlety") if column not in metadata]
    if missing:
        raise DataError(f"metadata lacks column(s) {', '.join(missing)}; expected the columns {', '.join(COLUMNS)}")
    ids = metadata["study_id"].astype(str)
    if ids.duplicated().any():
        raise DataError(f"metadata repeats study id(s) {', '.join(sorted(set(ids[ids.duplicated()])))}")
    return [case_from_row(row) for row in metadata.to_dict("records")]


def metadata_csv_text(metadata: pd.DataFrame) -> str:
    """Format a table like the real ``jsrt_metadata.csv``: its columns in order, ``15`` not ``15.0``, empty cells."""
    columns = [column for column in COLUMNS if column in metadata]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in metadata[columns].itertuples(index=False):
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def _cell(value: object) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
