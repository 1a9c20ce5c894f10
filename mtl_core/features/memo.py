"""Small facts about backbones remembered between runs, so that a run whose features are all cached needs neither
timm nor torchvision (importing them costs ~3 s on a 2-core CPU) nor the backbones themselves (~2 s to build).

A record lives in ``<cache>/memo/<kind>/`` as JSON. Its key holds everything the fact depends on (the question,
the library versions, the environment variables that move caches), and it lists the files and folders the fact was
read from with their state (absent, or size and modification time): the record holds only while every one of them
is still as it was. A record that is missing, unreadable or out of date is ignored and written again by the slow
path, so a record can make a run faster, never different.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import MTLError
from ..io import atomic_write, cache_dir

log = logging.getLogger(__name__)
#: environment variables that decide where weights are looked for
ENVIRONMENT = ("MTL_WEIGHTS_DIR", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TORCH_HOME",
               "XDG_CACHE_HOME", "HOME")



def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def library_versions() -> dict[str, str]:
    """Versions that can change extracted features, read without importing timm or torchvision."""
    return {"torch": torch.__version__, "torchvision": _version("torchvision"), "timm": _version("timm"),
            "mtl_core": __version__}


def path_state(path: Path) -> list | None:
    """``None`` for a missing path, else ``[kind, size, modification time in ns]`` (a link is followed)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return ["dir" if path.is_dir() else "file", stat.st_size, stat.st_mtime_ns]


def _record(kind: str, key: dict[str, Any]) -> tuple[Path, str]:
    full = {"key": key, "versions": library_versions(), "environment": {v: os.environ.get(v) for v in ENVIRONMENT}}
    text = json.dumps(full, sort_keys=True, default=str)
    return cache_dir() / "memo" / kind / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json", text


def recall(kind: str, key: dict[str, Any]) -> Any | None:
    """The value remembered for ``key``, or None when there is none or the files it was read from changed."""
    path, text = _record(kind, key)
    try:
        record = json.loads(path.read_text())
        if record["key"] != text:
            return None
        if any(path_state(Path(p)) != state for p, state in record["paths"].items()):
            return None
        return record["value"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remember(kind: str, key: dict[str, Any], value: Any, paths: list[Path]) -> None:
    """Keep ``value`` for ``key`` while each of ``paths`` stays as it is now. A record that cannot be written
    only costs the next run some time: it is logged, not raised."""
    path, text = _record(kind, key)
    record = {"key": text, "value": value, "paths": {str(p): path_state(Path(p)) for p in paths}}
    try:
        atomic_write(path, json.dumps(record), durable=False)
    except MTLError as exc:
        log.info("not remembered: %s", exc)


__all__ = ["library_versions", "path_state", "recall", "remember"]
