"""Read a label table (CSV, TSV or Parquet) as text cells, and find each case's image file."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import DataError
from ...io import contained, supported_suffixes
from .columns import Where

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
# When several files share a stem, the first suffix of this list wins, then any other supported one.
_PREFERRED = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp")


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def read_table(path: Path) -> tuple[pd.DataFrame, Where]:
    """All cells as stripped-header text (an empty cell is ``""``), and how errors name a row of this table."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"label table {path} {what}; set plugin_options.table to the CSV or Parquet file, "
                        f"relative to the data folder")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = _read_parquet(path)
        where: Where = lambda row: f"{path.name}: row {row + 1}"  # noqa: E731 - a one-line closure
    elif suffix in TABLE_SUFFIXES:
        sep = "\t" if suffix == ".tsv" else ","
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding="utf-8-sig")
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"label table {path} is not a readable {suffix[1:].upper()} file: "
                            f"{str(exc).strip().splitlines()[0]}") from None
        where = lambda row: f"{path.name}: line {row + 2}"  # noqa: E731 - line 1 is the header
    else:
        raise DataError(f"label table {path}: unsupported suffix {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"label table {path} has no rows; expected a header and one row per image")
    return frame, where


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise DataError(f"reading {path} (Parquet) needs pyarrow; install it (pip install pyarrow) or save the "
                        f"table as CSV") from None
    except Exception as exc:  # noqa: BLE001 - the Parquet engines raise many types for a bad file
        raise DataError(f"label table {path} is not a readable Parquet file: {exc}") from None
    return frame.apply(lambda column: column.map(_as_text)).astype(str)


def check_columns(frame: pd.DataFrame, wanted: dict[str, str], path: Path) -> None:
    """Every column named in the options exists; ``wanted`` maps column -> which option names it."""
    missing = [f"{column!r} ({why})" for column, why in wanted.items() if column not in frame.columns]
    if missing:
        raise DataError(f"label table {path} lacks column(s) {', '.join(missing)}; it has "
                        f"{', '.join(repr(c) for c in frame.columns)}: fix the table or the plugin options")


class ImageIndex:
    """The image files of a folder (not below it), looked up by relative name or, failing that, by stem.

    Every file it gives lies inside ``data_dir`` or the image folder (when the options put that elsewhere), with
    symbolic links resolved: a cell ``../../etc/passwd``, ``/etc/passwd`` or naming a link out of the folder is a
    :class:`DataError` naming the row.
    """

    def __init__(self, folder: Path, data_dir: Path | None = None) -> None:
        if not folder.is_dir():
            raise DataError(f"image folder {folder} does not exist; set plugin_options.images to the folder that "
                            f"holds the images, relative to the data folder")
        self.folder = folder
        self.roots = [folder] if data_dir is None else [data_dir, folder]
        suffixes = set(supported_suffixes())
        self._by_stem: dict[str, list[Path]] = {}
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if entry.is_file() and not entry.name.startswith(".") and path.suffix.lower() in suffixes:
                self._by_stem.setdefault(path.stem.lower(), []).append(path)

    @staticmethod
    def _rank(path: Path) -> tuple[int, str]:
        suffix = path.suffix.lower()
        return (_PREFERRED.index(suffix) if suffix in _PREFERRED else len(_PREFERRED), path.name)

    def resolve(self, name: str, where: str) -> Path:
        """The file ``name`` in the folder, else the file with its stem (any case, any supported suffix); either
        inside the data folder."""
        shown = name if len(name) <= 80 else name[:77] + "..."
        exact = self.folder / name.strip()
        if name.strip() and _is_file(exact):
            return self._inside(exact, shown, where)
        found = self._by_stem.get(Path(name.strip()).stem.lower(), [])
        if not found:
            stem = Path(shown.strip()).stem
            raise DataError(f"{where}: image {shown!r} not found in {self.folder} (also looked for "
                            f"{stem + '.*'!r} with a supported suffix); add the file or remove the row")
        return self._inside(min(found, key=self._rank), shown, where)

    def _inside(self, path: Path, shown: str, where: str) -> Path:
        if not any(contained(path, root) for root in self.roots):
            raise DataError(f"{where}: image {shown!r} is outside the data folder {self.roots[0]} (symbolic links "
                            "resolved); a table may name only files inside it: fix the row or move the file in")
        return path


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for names no file can have (an embedded NUL, too long, not encodable)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
