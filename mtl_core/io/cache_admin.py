"""What the cache folder holds, and pruning it by age or size (``mtl cache``, ``mtl cache prune``).

The cache (:func:`~mtl_core.io.files.cache_dir`) has one folder per kind: ``features/`` (bucket files of cached
features), ``inputs/`` (decoded images), ``memo/`` (small JSON records of backbones and weights), ``synthetic/``
(generated data sets, one folder per plugin and options). An *entry* is what can go without breaking anything: a
file of ``features``, ``inputs``, ``memo`` (and of a kind this module does not know), a whole data set folder of
``synthetic``. A removed entry is rebuilt when a run needs it again.

Its last use is the later of its modification and access times (of every file in a folder). Reading a file updates
its access time on the usual ``relatime`` mounts at most once a day, and never on ``noatime`` mounts, where the last
use is the time it was written: a cache read every day but written long ago may then look old. That errs towards
removing an entry that is rebuilt when needed, never towards keeping what is not used.

Never touched: anything outside the cache folder (symbolic links are neither followed nor removed), lock files
(``*.lock``), and temporary files and folders of a write in progress (``.NAME.*.tmp``, ``.NAME.building-*``) younger
than :data:`BUSY_SECONDS`; older ones are left by a killed process and are removed by any prune.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .files import cache_dir
from .locks import BUILDING

log = logging.getLogger(__name__)

FOLDER_KINDS = {"synthetic": 2}  # kind -> depth of its entries, which are folders (synthetic/PLUGIN/HASH)
BUSY_SECONDS = 3600  # a temporary file younger than this may be being written by another process
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class CacheEntry:
    """One removable entry: its kind, path, bytes, last use (seconds since the epoch) and whether it is a
    temporary left by a killed process."""

    kind: str
    path: Path
    size: int
    last_use: float
    stale: bool = False


def parse_age(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``2w``, ``45s`` (a number and one unit)."""
    match = _AGE.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"--older-than {text[:40]!r} is not an age; give a number and a unit: 30d, 12h, 90m, 2w")
    return float(match.group(1)) * _SECONDS[match.group(2).lower()]


def parse_size(text: str) -> int:
    """Bytes in ``20G``, ``500M``, ``1.5G``, ``100K``, ``4096`` (K, M, G, T are powers of 1024; ``GB``, ``GiB``
    are the same as ``G``)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"--max-size {text[:40]!r} is not a size; give a number and a unit: 20G, 500M, 100K")
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))


def human_size(size: float) -> str:
    """``size`` bytes as ``du -h`` writes it, in powers of 1024 (``512B``, ``1.5K``, ``20G``): what
    :func:`parse_size` reads."""
    for unit in "BKMG":
        if size < 1024:
            return f"{size:.3g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.3g}T"


def summary(entries: list[CacheEntry]) -> dict[str, tuple[int, int, float]]:
    """Kind -> (entries, bytes, oldest last use) of ``entries``."""
    kinds: dict[str, tuple[int, int, float]] = {}
    for e in entries:
        count, size, oldest = kinds.get(e.kind, (0, 0, e.last_use))
        kinds[e.kind] = (count + 1, size + e.size, min(oldest, e.last_use))
    return kinds


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or BUILDING in name or ".deleting-" in name)


def _tree(path: Path) -> tuple[int, float]:
    """Bytes and last use of a folder's files (symbolic links neither followed nor counted)."""
    size, last = 0, 0.0
    for folder, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:  # removed meanwhile by the run that owns it
                continue
            if not os.path.islink(os.path.join(folder, name)):
                size, last = size + stat.st_size, max(last, stat.st_mtime, stat.st_atime)
    return size, last


def _entry(kind: str, path: Path, now: float) -> CacheEntry | None:
    if path.is_symlink() or path.name.endswith(".lock"):
        return None
    try:
        if path.is_dir():
            size, last = _tree(path)
        else:
            stat = path.lstat()
            size, last = stat.st_size, max(stat.st_mtime, stat.st_atime)
    except OSError:  # removed meanwhile (a temporary file renamed into place)
        return None
    if _is_temporary(path.name):
        return CacheEntry(kind, path, size, last, stale=True) if now - last > BUSY_SECONDS else None
    return CacheEntry(kind, path, size, last)


def _walk(kind: str, folder: Path, depth: int | None, now: float) -> list[CacheEntry]:
    """The entries of one kind: files at any depth, or folders at ``depth``; temporaries wherever they are."""
    found: list[CacheEntry] = []
    try:
        children = sorted(folder.iterdir())
    except OSError:  # removed meanwhile, or unreadable: nothing of it to show or remove
        return found
    for child in children:
        if child.is_symlink():
            continue
        if _is_temporary(child.name) or child.is_file() or (depth == 1 and child.is_dir()):
            entry = _entry(kind, child, now)
            found += [entry] if entry else []
        elif child.is_dir():
            found += _walk(kind, child, None if depth is None else depth - 1, now)
    return found


def cache_entries(root: Path | None = None, now: float | None = None) -> list[CacheEntry]:
    """Every entry of the cache at ``root`` (default :func:`cache_dir`), kind by kind."""
    root = Path(root) if root is not None else cache_dir()
    now = time.time() if now is None else now
    if not root.is_dir():
        return []
    entries = []
    for kind in sorted(root.iterdir()):
        if kind.is_symlink():
            continue
        if kind.is_dir():
            entries += _walk(kind.name, kind, FOLDER_KINDS.get(kind.name), now)
        elif (entry := _entry("(top level)", kind, now)) is not None:
            entries.append(entry)
    return entries


def choose_prunable(entries: list[CacheEntry], older_than: float | None = None, max_size: int | None = None,
                    now: float | None = None) -> list[CacheEntry]:
    """What a prune removes: stale temporaries, entries unused for ``older_than`` seconds, then the least recently
    used ones until the rest fits in ``max_size`` bytes (oldest first)."""
    now = time.time() if now is None else now
    chosen = [e for e in entries if e.stale or (older_than is not None and now - e.last_use > older_than)]
    if max_size is not None:
        left = sorted((e for e in entries if e not in chosen), key=lambda e: e.last_use)
        total = sum(e.size for e in left)
        for entry in left:
            if total <= max_size:
                break
            chosen.append(entry)
            total -= entry.size
    return chosen


def remove_entry(entry: CacheEntry, root: Path) -> bool:
    """Remove one entry if it is still inside ``root`` and not a link; a folder is first renamed aside, so that it
    disappears at once. False when it was not removed (gone already, or outside)."""
    root = Path(root).resolve()
    path = entry.path
    if path.is_symlink() or not path.exists():
        return False
    if root not in path.resolve().parents:  # a path reached through a link out of the cache: never
        return False
    try:
        if path.is_dir():
            aside = path.parent / f".{path.name}.deleting-{uuid.uuid4().hex[:8]}"
            os.rename(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:  # removed by another prune meanwhile, or not ours to remove (permissions)
        log.warning("could not remove %s from the cache: %s", path, exc.strerror or exc)
        return False
    for parent in path.parents:  # folders left empty (a features key without buckets), up to the kind's
        if parent.resolve() == root or parent.parent.resolve() == root:
            break
        try:
            parent.rmdir()
        except OSError:
            break
    return True


def _when(stamp: float, now: float) -> str:
    seconds = max(now - stamp, 0)
    for unit, length in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * length:
            return f"{seconds / length:.0f} {unit} ago"
    return "just now"


def cache_report(root: Path | None = None) -> list[str]:
    """What ``mtl cache`` prints: the folder, then entries, size and oldest last use per kind, and the total."""
    root = Path(root) if root is not None else cache_dir()
    now, entries = time.time(), cache_entries(root)
    lines = [f"cache: {root} (set MTL_CACHE_DIR to move it)"]
    if not entries:
        return [*lines, "empty"]
    lines.append(f"{'kind':<12} {'entries':>8} {'size':>8}  oldest use")
    for kind, (count, size, oldest) in summary(entries).items():
        lines.append(f"{kind:<12} {count:>8} {human_size(size):>8}  {_when(oldest, now)}")
    lines.append(f"{'total':<12} {len(entries):>8} {human_size(sum(e.size for e in entries)):>8}")
    return lines


def prune_cache(older_than: str | None = None, max_size: str | None = None, dry_run: bool = False,
                root: Path | None = None) -> list[str]:
    """Remove (or with ``dry_run`` list) what :func:`choose_prunable` picks; what ``mtl cache prune`` prints.

    Raises:
        ConfigError: neither limit given, or one that does not parse.
    """
    if older_than is None and max_size is None:
        raise ConfigError("mtl cache prune needs --older-than AGE (30d) or --max-size SIZE (20G), or both")
    age = None if older_than is None else parse_age(older_than)
    size = None if max_size is None else parse_size(max_size)
    root = Path(root) if root is not None else cache_dir()
    now, entries = time.time(), cache_entries(root)
    chosen = choose_prunable(entries, age, size, now)
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {e.kind} {e.path.relative_to(root)} ({human_size(e.size)}, last used {_when(e.last_use, now)}"
             f"{', left by a killed process' if e.stale else ''})" for e in chosen] if dry_run else []
    done = chosen if dry_run else [e for e in chosen if remove_entry(e, root)]
    freed, total = sum(e.size for e in done), sum(e.size for e in entries)
    lines.append(f"{verb} {len(done)} of {len(entries)} entries ({human_size(freed)}); the cache "
                 f"{'would hold' if dry_run else 'holds'} {human_size(total - freed)} in {root}")
    return lines
