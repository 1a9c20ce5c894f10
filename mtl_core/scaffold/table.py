"""Infer the ``table`` plugin's options from a data folder: its table, the image folder, and one task per column.

The rules, each recorded with its reason so that the written config can say why (``mtl init table``):

- the **file column** is the column whose cells name existing image files (exactly, else by stem with any supported
  suffix) in the data folder or one of its sub-folders, which becomes ``images``;
- the **id column** is a column named ``id`` or ``*_id`` with a unique value in every row, else a column whose
  cells are the stems of its row's file, else the file column itself (file names are unique ids too);
- a column named like ``patient``, ``subject`` or ``group`` whose values repeat is the **group column**;
- **missing markers** are the usual ones (``''``, ``NA``, ``?``, ...) found in the table, plus rare text in an
  otherwise numeric column;
- each other column's **kind** comes from its values: only 0 and 1 (or true/false, yes/no) -> binary; numbers ->
  regression; a few distinct texts (at most 20, at most half the labelled rows) -> classification
  with those classes; one x/y pair of numbers inside the images' frame -> a point task, only when unambiguous.
  Anything else (free text, unique names, a constant, mixed numbers and text) is left out, with the reason.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.png", "c.png", "d.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> rows = ["file,count,sick", "a.png,1,yes", "b.png,3,no", "c.png,?,no", "d.png,2,yes"]
    >>> _ = (folder / "labels.csv").write_text("\\n".join(rows))
    >>> guess = infer_table(folder)
    >>> guess.id_column, guess.file_column, guess.missing_values, {n: s["kind"] for n, s in guess.tasks.items()}
    ('file', 'file', ['', '?'], {'count': 'regression', 'sick': 'binary'})
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError
from ..io import supported_suffixes
from .columns import Column, decide, find_markers

_GROUP_NAMES = re.compile(r"(patient|subject|group|participant)", re.IGNORECASE)
_ID_NAMES = re.compile(r"^(id|.*[_\- ]id|.*Id|.*ID)$")
_SIZE_SAMPLES = 5  # images opened (headers only) to learn the frame of coordinates


@dataclass
class TableGuess:
    """The inferred options of the ``table`` plugin, with the reason of every choice (see :func:`infer_table`)."""

    data_dir: Path
    table: str
    rows: int
    images: str
    file_column: str
    id_column: str
    group_column: str | None = None
    missing_values: list[str] = field(default_factory=list)
    markers_why: str = ""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    columns: list[Column] = field(default_factory=list)

    def options(self) -> dict[str, Any]:
        """The ``plugin_options`` of the ``table`` plugin."""
        options: dict[str, Any] = {"table": self.table, "images": self.images, "id_column": self.id_column,
                                   "file_column": self.file_column}
        if self.group_column:
            options["group_column"] = self.group_column
        return options | {"missing_values": list(self.missing_values), "tasks": self.tasks}

    def why(self, role: str) -> str:
        """The reason recorded for the first column of ``role``."""
        return next((c.why for c in self.columns if c.role == role), "")


def find_table(data_dir: Path, table: str | Path | None = None) -> Path:
    """The label table: ``table`` (relative to ``data_dir`` unless it exists as given), else the one CSV/TSV there."""
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist or is not a folder; give the folder that holds the "
                        f"images and their table")
    if table is not None:
        path = Path(table) if Path(table).is_file() else data_dir / table
        if not path.is_file():
            raise DataError(f"table {table} not found (also looked in {data_dir}); give --table a CSV file")
        return path
    found = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in (".csv", ".tsv") and p.is_file())
    if len(found) != 1:
        what = "no CSV or TSV file" if not found else f"{len(found)} tables ({', '.join(p.name for p in found)})"
        raise DataError(f"{data_dir} holds {what}; name the table with --table FILE")
    return found[0]


def read_cells(path: Path) -> pd.DataFrame:
    """Every cell as stripped text, as the ``table`` plugin reads it (an empty cell is ``''``)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                            sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path} is not a readable table: {str(exc).strip().splitlines()[0]}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{path} has no rows; expected a header and one row per image")
    return frame.apply(lambda column: column.str.strip())


def _image_folders(data_dir: Path) -> dict[str, dict[str, set[str]]]:
    """Candidate image folder (relative, '.' for the data folder) -> {"names": file names, "stems": lower stems}."""
    suffixes = set(supported_suffixes())
    folders = [data_dir] + sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = {}
    for folder in folders:
        files = [e.name for e in os.scandir(folder) if e.is_file() and Path(e.name).suffix.lower() in suffixes]
        if files or folder == data_dir:  # the data folder may hold the images in paths such as images/a.png
            found["." if folder == data_dir else folder.name] = {"names": set(files),
                                                                 "stems": {Path(f).stem.lower() for f in files}}
    return found


def _file_matches(cells: pd.Series, folder: Path, names: set[str], stems: set[str]) -> tuple[int, int]:
    """(cells naming a file of ``folder`` exactly, as a name or a relative path; cells naming one only by stem)."""
    exact = by_stem = 0
    for cell in cells:
        if cell in names or ("/" in cell and (folder / cell).is_file()):
            exact += 1
        elif cell and Path(cell).stem.lower() in stems:
            by_stem += 1
    return exact, by_stem


def _find_files(frame: pd.DataFrame, data_dir: Path) -> tuple[str, str, str]:
    """(file column, image folder, why): the column whose cells name the most existing images."""
    folders = _image_folders(data_dir)
    best: tuple[tuple[int, int], str, str] | None = None
    for folder, index in folders.items():
        for column in frame.columns:
            score = _file_matches(frame[column], data_dir / folder, index["names"], index["stems"])
            if sum(score) and (best is None or score > best[0]):
                best = (score, column, folder)
    if best is None:
        looked = ", ".join(f"{name}/" for name in folders)
        raise DataError(f"no column of the table names an image file in {data_dir} or its sub-folders (looked in "
                        f"{looked}); expected a column of file names such as 'image.png'")
    (exact, by_stem), column, folder = best
    where = "the data folder" if folder == "." else f"{folder}/"
    how = f"{exact} name a file" + (f", {by_stem} its stem" if by_stem else "")
    unmatched = len(frame) - exact - by_stem
    tail = f"; {unmatched} row(s) name no file there: fix them or remove the rows" if unmatched else ""
    return column, folder, f"of {len(frame)} rows, {how} in {where}{tail}"


def _find_id(frame: pd.DataFrame, file_column: str) -> tuple[str, str]:
    """(id column, why)."""
    unique = [c for c in frame.columns if c != file_column and frame[c].is_unique and (frame[c] != "").all()]
    named = [c for c in unique if _ID_NAMES.match(c)]
    if named:
        return named[0], "named like an id, a unique value in every row"
    stems = [Path(cell).stem for cell in frame[file_column]]
    same = [c for c in unique if list(frame[c]) == stems]
    if same:
        return same[0], "each value is its row's file name without the suffix"
    if not frame[file_column].is_unique:
        repeated = frame[file_column][frame[file_column].duplicated()].iloc[0]
        raise DataError(f"no id column (a column named 'id' or '*_id' with unique values), and the file column "
                        f"{file_column!r} repeats {repeated!r}: add an id column to the table")
    return file_column, "no id column in the table: each image's file name is its id (unique in every row)"


def _frame_size(folder: Path, files: pd.Series) -> tuple[int, int] | None:
    """(width, height) shared by the first images of the table (headers only), else None."""
    from PIL import Image, UnidentifiedImageError  # lazy: only coordinates need it, and only a few headers

    sizes = set()
    for name in files.iloc[:_SIZE_SAMPLES]:
        try:
            with Image.open(folder / name) as image:
                sizes.add(image.size)
        except (OSError, UnidentifiedImageError):  # DICOM, a stem only, an unreadable file: size unknown
            return None
    return sizes.pop() if len(sizes) == 1 else None


def infer_table(data_dir: Path, table: str | Path | None = None) -> TableGuess:
    """Infer the ``table`` plugin's options for ``data_dir``; raise :class:`DataError` when it cannot."""
    data_dir = Path(data_dir)
    path = find_table(data_dir, table)
    frame = read_cells(path)
    file_column, folder, file_why = _find_files(frame, data_dir)
    id_column, id_why = _find_id(frame, file_column)
    relative = os.path.relpath(path, data_dir) if path.resolve().is_relative_to(data_dir.resolve()) else str(path)
    guess = TableGuess(data_dir=data_dir, table=Path(relative).as_posix(), rows=len(frame), images=folder,
                       file_column=file_column, id_column=id_column)
    guess.columns += [Column(file_column, "file", file_why)]
    if id_column != file_column:
        guess.columns.append(Column(id_column, "id", id_why))
    else:
        guess.columns[0] = Column(file_column, "file", f"{file_why}; {id_why}")
    rest = [c for c in frame.columns if c not in (file_column, id_column)]
    group = next((c for c in rest if _GROUP_NAMES.search(c) and not frame[c].is_unique), None)
    if group is not None:
        guess.group_column = group
        count = frame[group].nunique()
        guess.columns.append(Column(group, "group", f"named like a group key, {count} groups of "
                                                    f"{len(frame) / count:.3g} rows on average: they stay together "
                                                    f"in the split"))
        rest.remove(group)
    guess.missing_values, guess.markers_why = find_markers(frame[rest])
    size = _frame_size(data_dir / folder, frame[file_column])
    for column, name, spec in decide(frame[rest], guess.missing_values, size):
        guess.columns.append(column)
        if spec is not None:
            guess.tasks[name] = spec
    return guess
