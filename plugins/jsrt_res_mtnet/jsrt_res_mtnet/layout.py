"""Find the JSRT metadata table and images in a data folder, and the image file for each study.

Two layouts are supported, both with ``jsrt_metadata.csv`` directly in the data folder:

* **Kaggle**: the images (PNG, JPEG or DICOM, any of them) in ``images/``, ``images/images/`` (some copies) or
  beside the CSV; these folders are tried in that order and the first holding images wins.
* **Original**: the headerless ``.IMG`` files beside the CSV or anywhere in folders below it (the JSRT CD keeps
  nodule and non-nodule images in separate folders). Only ``.IMG`` files are searched below the data folder, so
  that unrelated images such as segmentation masks with the same names are never picked up.

A study is matched to its file by name stem, case-insensitively and whatever the extension, so a table naming
``JPCLN001.png`` also finds ``JPCLN001.IMG``. When several files share the stem, the exact file name wins, then the
extension order of :data:`IMAGE_SUFFIXES`.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "jsrt_metadata.csv").write_text("study_id\\n")
    >>> (root / "images").mkdir(); _ = (root / "images" / "JPCLN001.png").write_bytes(b"...")
    >>> layout = find_layout(root)
    >>> resolve_image(layout, "JPCLN001.IMG").name
    'JPCLN001.png'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mtl_core import DataError

METADATA_NAME = "jsrt_metadata.csv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".img", ".dcm")  # preference order when several files share a stem
RAW_SUFFIX = ".img"
LAYOUTS_HELP = (
    f"Kaggle ({METADATA_NAME} with the images in images/, images/images/ or beside it) or "
    f"original ({METADATA_NAME} with the .IMG files beside it or in folders below it)"
)


@dataclass(frozen=True)
class Layout:
    """Where a JSRT copy keeps its table and images.

    Attributes:
        root: The data folder.
        metadata_csv: The metadata table, ``root / "jsrt_metadata.csv"``.
        image_dir: The folder holding the images.
        recursive: True for the original layout: ``.IMG`` files anywhere below ``image_dir``.
    """

    root: Path
    metadata_csv: Path
    image_dir: Path
    recursive: bool = False


def find_layout(root: str | Path) -> Layout:
    """Detect the layout of a JSRT data folder.

    Args:
        root: The data folder.

    Returns:
        The detected :class:`Layout`.

    Raises:
        DataError: The folder is missing, not a folder, empty, has no ``jsrt_metadata.csv``, or has no images.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}; pass the folder that holds {METADATA_NAME}")
    if not any(not entry.name.startswith(".") for entry in os.scandir(root)):
        raise DataError(f"data folder {root} is empty; put a JSRT copy there: {LAYOUTS_HELP}")
    metadata_csv = _child(root, METADATA_NAME, want_dir=False)
    if metadata_csv is None:
        raise DataError(f"data folder {root} has no {METADATA_NAME}{_nested_hint(root)}; supported: {LAYOUTS_HELP}; "
                        f"put the table there")
    images = _child(root, "images", want_dir=True)
    nested = _child(images, "images", want_dir=True) if images else None
    for candidate in (images, nested, root):
        if candidate is not None and next(_iter_images(candidate, recursive=False), None) is not None:
            return Layout(root, metadata_csv, candidate)
    if next(_iter_images(root, recursive=True), None) is not None:
        return Layout(root, metadata_csv, root, recursive=True)
    raise DataError(
        f"data folder {root} has {METADATA_NAME} but no images: looked in images/, images/images/, the folder "
        f"itself ({', '.join(IMAGE_SUFFIXES)}) and for .IMG files below it; supported: {LAYOUTS_HELP}"
    )


def list_images(layout: Layout) -> list[Path]:
    """Return every image file of the layout, sorted (to find images that the table does not list)."""
    return sorted(_iter_images(layout.image_dir, recursive=layout.recursive))


def resolve_image(layout: Layout, study_id: str) -> Path:
    """Return the image file for ``study_id``, matched by name stem with any supported extension.

    Args:
        layout: From :func:`find_layout`.
        study_id: The table's ``study_id``, e.g. ``'JPCLN001.png'``; its extension need not match the file's.

    Raises:
        DataError: No file of the layout has the study's stem.
    """
    name = Path(study_id.strip()).name
    exact = layout.image_dir / name
    if not layout.recursive and exact.suffix.lower() in IMAGE_SUFFIXES and exact.is_file():
        return exact
    stem = Path(name).stem.lower()
    matches = [path for path in _iter_images(layout.image_dir, layout.recursive) if path.stem.lower() == stem]
    if not matches:
        where = f"{layout.image_dir} and the folders below it" if layout.recursive else str(layout.image_dir)
        suffixes = RAW_SUFFIX if layout.recursive else "|".join(IMAGE_SUFFIXES)
        raise DataError(
            f"image for study_id {study_id!r} not found: looked for {Path(name).stem}({suffixes}), any case, "
            f"in {where}; add the file or remove the row from {layout.metadata_csv.name}"
        )
    return min(matches, key=lambda path: (path.name != name, IMAGE_SUFFIXES.index(path.suffix.lower()), path))


def _iter_images(folder: Path, recursive: bool) -> Iterator[Path]:
    """Yield the non-hidden image files in ``folder``; below it, only ``.IMG`` files when ``recursive``."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files, including macOS '._JPCLN001.png' resource forks
        if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            if not recursive or Path(entry.name).suffix.lower() == RAW_SUFFIX:
                yield Path(entry.path)
        elif recursive and entry.is_dir():
            yield from _iter_images(Path(entry.path), recursive=True)


def _child(folder: Path, name: str, want_dir: bool) -> Path | None:
    """The entry of ``folder`` called ``name``, case-insensitively (exact case first)."""
    exact = folder / name
    if exact.is_dir() if want_dir else exact.is_file():
        return exact
    for entry in os.scandir(folder):
        if entry.name.lower() == name.lower() and (entry.is_dir() if want_dir else entry.is_file()):
            return Path(entry.path)
    return None


def _nested_hint(root: Path) -> str:
    """Point at a table one level down: an archive often unpacks into a sub-folder."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and _child(Path(entry.path), METADATA_NAME, want_dir=False):
            return f" (found one in {entry.path}: pass that folder instead)"
    return ""
