"""The output folder of ``mtl init``: created when absent, refused when it already holds anything."""

from __future__ import annotations

from pathlib import Path

from ..errors import MTLError


def prepare_output(folder: Path) -> Path:
    """Create ``folder`` (and its parents) unless it exists with something in it, which is refused."""
    if folder.exists() and not folder.is_dir():
        raise MTLError(f"output {folder} is a file; give a new or empty folder with --output")
    if folder.is_dir() and any(folder.iterdir()):
        raise MTLError(f"output folder {folder} exists and is not empty; give a new or empty folder with --output "
                       f"(nothing was written)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MTLError(f"cannot create the output folder {folder} ({exc.strerror}); give another --output") from None
    return folder


def write_files(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` (path relative to ``folder`` -> text) into the prepared ``folder``; return their paths."""
    prepare_output(folder)
    written = []
    for relative, text in files.items():
        path = folder / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise MTLError(f"cannot write {path} ({exc.strerror}); give another --output") from None
        written.append(path)
    return written
