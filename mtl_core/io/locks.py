"""Folders that several processes may build at once (the synthetic data sets in the cache): built by one process
into a temporary sibling under an inter-process lock and renamed into place, so that nobody ever reads a
half-written folder and the others wait for the finished one.

The lock is ``fcntl.flock`` on a ``NAME.lock`` file beside the folder (POSIX: Linux, macOS). The kernel releases it
when its holder exits, even on SIGKILL, so a crashed builder never blocks the next one. On a platform without
``fcntl`` (Windows) there is no lock: each process builds into a temporary folder of its own and the first rename
wins; the others' copies are dropped, so a reader still never sees a half-written folder, at worst time is spent
twice. ``flock`` on a network file system (NFS) may not lock between machines: keep ``MTL_CACHE_DIR`` local.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from .files import write_error

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Marks the temporary folders of :func:`build_folder_once` (``.NAME.building-ID``); ``mtl cache prune`` leaves
#: young ones alone, since another process may be writing them.
BUILDING = ".building-"


def lock_path(target: Path) -> Path:
    """The lock file of ``target``: ``NAME.lock`` beside it (never deleted: deleting a lock file others may have
    open lets two processes hold "the" lock at once)."""
    return target.parent / f"{target.name}.lock"


@contextlib.contextmanager
def exclusive_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive inter-process lock on the file ``path`` (created if needed) for the ``with`` block.

    ``on_wait`` is called once when another process holds it (then this one blocks until it is free). Without
    ``fcntl`` the block runs unlocked.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # closed by the with below, after the lock is released
    except OSError as exc:
        raise write_error(path, exc) from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _drop_stale(target: Path) -> None:
    """Remove temporary folders of ``target`` that crashed builders left (called under the lock: nobody else is
    building then)."""
    for stale in target.parent.glob(f".{target.name}{BUILDING}*"):
        if fcntl is not None and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def build_folder_once(target: Path, build: Callable[[Path], Path | None],
                      on_wait: Callable[[], None] | None = None) -> Path | None:
    """``build(folder)`` into a temporary sibling of ``target``, then renamed to ``target``; one process at a time.

    Args:
        target: the folder to have. When it exists it is complete (only a finished build is renamed there) and
            ``build(target)`` is called on it (a build must return quickly for a finished folder).
        build: writes a folder into the one it is given and returns the folder to use (that one or a folder
            inside it), or None when there is nothing to build.
        on_wait: called once when another process is building ``target`` and this one waits for it.

    Returns:
        ``build``'s folder, moved to its place under ``target``; None when ``build`` returned None.

    Raises:
        RunError: the folder or its lock cannot be written (one line: permissions, a full disk, a file in the way).
    """
    target = Path(target)
    if target.exists():
        return build(target)
    with exclusive_lock(lock_path(target), on_wait):
        if target.exists():  # another process finished it while this one waited
            return build(target)
        _drop_stale(target)
        scratch = target.parent / f".{target.name}{BUILDING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            return _build_and_move(target, scratch, build)
        except OSError as exc:
            raise write_error(target, exc) from None
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)


def _build_and_move(target: Path, scratch: Path, build: Callable[[Path], Path | None]) -> Path | None:
    """``build(scratch)``, then ``scratch`` renamed to ``target``; the folder to use."""
    made = build(scratch)
    if made is None:
        return None
    made, here = Path(made).resolve(), scratch.resolve()
    if here not in (made, *made.parents):  # the build wrote elsewhere: nothing of ours to move
        return made
    inner = made.relative_to(here)
    try:
        os.rename(scratch, target)
    except OSError:  # pragma: no cover - without a lock, another process renamed its copy first
        if not target.exists():
            raise
        log.info("%s was built by another process meanwhile; using that one", target)
    return target / inner
