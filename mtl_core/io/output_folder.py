"""The one owner of "is this output folder ours and free": every command that writes a folder of results
(``mtl run``, ``mtl compare``, :func:`~mtl_core.workflow.save_run`) claims it here first.

The rule (docs/architecture.md, "The run folder"):

* **Ours.** A folder is ours when it is new, empty, or holds the marker :data:`MARKER` of the same writer
  (``{"format": "mtl-output/1", "written_by": "mtl run", "mtl_core": VERSION}``, written when the folder is
  claimed), or is a folder that writer made before markers existed. Anything else is refused with one line unless
  ``overwrite``: then the folder is claimed, and still only the writer's own file names are replaced.
* **Free.** The claim holds an exclusive ``fcntl.flock`` on :data:`LOCK` inside the folder until it is released
  (or its process ends, even by SIGKILL). A second claim refuses at once rather than wait: the two would write the
  same files, so waiting only makes the second run overwrite the first one's results later.
* **Never through a link.** A symbolic link where the writer puts a file or a folder (``checkpoints/``,
  ``figures/``, ``metrics.json`` ...) is refused, ``overwrite`` or not: writing through it would change files
  outside the folder. (The folder itself may be a link: the user named it.)
* **Never what we did not write.** A fresh claim deletes only the writer's own file names, the finished mark first
  (its removal is atomic), so a re-run that is interrupted never leaves a folder that still looks finished. A claim
  to ``resume`` deletes nothing.

Without ``fcntl`` (Windows) there is no lock; the rest holds.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "run"
    >>> with claim_output(folder, "mtl run"):
    ...     _ = (folder / "metrics.json").write_text("{}")
    >>> owner(folder)
    'mtl run'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType

from ..errors import RunError
from .files import write_error, write_json
from .run_folder import SCHEMA_FILE, WEIGHTS_FILE

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

OUTPUT_FORMAT = "mtl-output/1"
MARKER = ".mtl-folder.json"
LOCK = ".mtl-folder.lock"
_OVERWRITE = "pass --overwrite (overwrite=True from Python)"


@dataclass(frozen=True)
class FolderKind:
    """What one writer puts in its folder.

    Attributes:
        writer: its name, as the marker records it (``"mtl run"``).
        finished: the file written last, whose presence marks a finished folder.
        files: the other top-level files it writes (replaced on a fresh claim).
        folders: sub-folders it writes into (never links).
        cleared: patterns of the files in them that a fresh claim deletes (the figures).
        legacy: (file, JSON key, value) that marks a folder this writer made before markers existed.
    """

    writer: str
    finished: str
    files: tuple[str, ...]
    folders: tuple[str, ...] = ()
    cleared: tuple[str, ...] = ()
    legacy: tuple[str, str, str] | None = None


_REPORT = ("predictions.csv", "report.md", "report.html", "history.json", "ood.safetensors")
KINDS = {kind.writer: kind for kind in (
    FolderKind("mtl run", "metrics.json", ("config.yaml", WEIGHTS_FILE, SCHEMA_FILE, "split.json", *_REPORT),
               ("checkpoints", "figures"), ("figures/*.png",), ("checkpoints/run.json", "format", "mtl-resume/1")),
    FolderKind("mtl_core.save_run", "metrics.json", (WEIGHTS_FILE, SCHEMA_FILE, *_REPORT), ("figures",),
               ("figures/*.png",), (SCHEMA_FILE, "saved_by", "mtl_core.save_run")),
    FolderKind("mtl compare", "compare.md", ("compare.csv",), legacy=("compare.md", "", "")),
)}


def owner(folder: Path) -> str | None:
    """The writer whose folder ``folder`` is (its marker, else a legacy sign), or None."""
    marker = Path(folder) / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found.get("written_by") if isinstance(found, dict) and found.get("format") == OUTPUT_FORMAT else None
    for kind in KINDS.values():
        if kind.legacy and _has(Path(folder), *kind.legacy):
            return kind.writer
    return None


def _has(folder: Path, name: str, key: str, value: str) -> bool:
    path = folder / name
    if not path.is_file() or path.is_symlink() or path.parent.is_symlink():
        return False
    if not key:
        return True
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and found.get(key) == value


def refuse_link(path: Path) -> None:
    """Raise a one-line :class:`RunError` when ``path`` is a symbolic link (mtl never writes through one)."""
    if Path(path).is_symlink():
        raise RunError(f"{path} is a symbolic link (to {os.readlink(path)}); mtl never writes through a link out "
                       f"of its output folder: remove the link, or give another folder")


def check_output(folder: Path, writer: str, *, overwrite: bool = False) -> None:
    """Refuse ``folder`` for ``writer`` with one line unless it is new, empty, its own, or ``overwrite``; refuse a
    link among the writer's names in any case. Nothing is written."""
    kind, folder = KINDS[writer], Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder} is a file; give a folder for the output")
    if not folder.exists():
        return
    for name in (MARKER, LOCK, kind.finished, *kind.files, *kind.folders):
        refuse_link(folder / name)
    entries = sorted(p.name for p in folder.iterdir() if p.name not in (MARKER, LOCK)
                     and not (p.name.startswith(f".{MARKER}.") and p.name.endswith(".tmp")))  # a marker being written
    found = owner(folder)
    if not entries or found == writer or overwrite:
        return
    if found is not None:
        raise RunError(f"{folder} holds the output of {found}, not of {writer}; give another folder, or "
                       f"{_OVERWRITE} to replace the files {writer} writes there")
    raise RunError(f"{folder} is not empty and was not written by {writer} ({len(entries)} entries, e.g. "
                   f"{entries[0]!r}); give a new or empty folder, or {_OVERWRITE} to write there anyway (only "
                   f"{writer}'s own files are replaced, nothing else is deleted)")


class OutputFolder:
    """A claimed output folder: the lock is held until :meth:`release` (or the end of a ``with`` block)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Let another claim have the folder (the lock file stays: deleting it would let two hold it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def claim_output(folder: Path, writer: str, *, overwrite: bool = False, resume: bool = False) -> OutputFolder:
    """Claim ``folder`` for ``writer`` (a key of :data:`KINDS`): check it, lock it, mark it ours, and unless
    ``resume`` remove the finished mark and then the writer's other files (never anything else).

    Raises:
        RunError: the folder is not ours (and not ``overwrite``), holds a link where the writer writes, is in use
            by another process, or cannot be created.
    """
    folder = Path(folder)
    try:
        check_output(folder, writer, overwrite=overwrite)  # before creating anything in a folder that is refused
    except RunError:
        _refuse_if_held(folder)  # another claim busy making the folder its own: say that, not "not ours"
        raise
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc) from None
    claimed = OutputFolder(folder, _lock(folder))
    try:
        check_output(folder, writer, overwrite=overwrite)  # again: another claim may have finished meanwhile
        if not resume:
            _clear(folder, KINDS[writer])
        write_json(folder / MARKER, {"format": OUTPUT_FORMAT, "written_by": writer, "mtl_core": _version()})
    except BaseException:
        claimed.release()
        raise
    return claimed


def _lock(folder: Path) -> int | None:
    """An open descriptor of the folder's lock file, exclusively locked; a one-line error when it is taken."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise write_error(folder / LOCK, exc) from None
    holder = _holder(fd)
    if holder is not None:
        os.close(fd)
        raise _in_use(folder, holder)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> str | None:
    """Lock the open lock file ``fd`` without waiting: None when this process now holds it, else the pid another
    holder wrote into it ("?" when it wrote none yet)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    return None


def _in_use(folder: Path, holder: str) -> RunError:
    return RunError(f"{folder} is in use by another mtl process (pid {holder}) writing to it; wait for it to finish, "
                    f"or give another folder")


def _refuse_if_held(folder: Path) -> None:
    """Raise the "in use" error when another process holds the folder's lock (the lock file is only read)."""
    path = folder / LOCK
    if fcntl is None or path.is_symlink() or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        holder = _holder(fd)
    finally:
        os.close(fd)  # also releases a lock this probe took
    if holder is not None:
        raise _in_use(folder, holder)


def _clear(folder: Path, kind: FolderKind) -> None:
    """Delete the finished mark (first, so that an interrupted re-run never looks finished), then the writer's
    other files, their leftover temporary files and the PNGs of its folders; nothing else."""
    doomed = [folder / kind.finished, *(folder / name for name in kind.files)]
    doomed += [p for name in (kind.finished, *kind.files) for p in folder.glob(f".{name}.*.tmp")]
    doomed += [p for pattern in kind.cleared for p in folder.glob(pattern)]
    for path in doomed:
        if path.is_file() or path.is_symlink():
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise write_error(path, exc) from None


def _version() -> str:
    try:
        return metadata.version("mtl_core")
    except metadata.PackageNotFoundError:
        return "unknown"


__all__ = ["KINDS", "LOCK", "MARKER", "OUTPUT_FORMAT", "FolderKind", "OutputFolder", "check_output", "claim_output",
           "owner", "refuse_link"]
