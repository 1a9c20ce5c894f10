"""Whether a feature matrix fits in memory, checked before extracting it (feature maps grow fast: docs/memory.md).

Example:
    >>> feature_bytes(247, 483_328, torch.float16) / 2**20  # 247 images of EfficientNet-Lite0 maps, in MiB
    227.703125
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..accel import fits_on_device
from ..errors import ConfigError

if TYPE_CHECKING:
    from .backbones import BackboneFusion
    from .fusion import LazyFusion

log = logging.getLogger(__name__)
SAFE_SHARE = 0.7  # of the available host memory: the rest is the interpreter, the model, batches and the OS
MEMINFO = Path("/proc/meminfo")


def available_memory() -> int | None:
    """Bytes of host memory available now: ``MemAvailable`` of /proc/meminfo on Linux (free memory plus what the
    kernel can reclaim), else the free pages ``os.sysconf`` reports; None when neither tells."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def feature_bytes(n: int, num_features: int, dtype: torch.dtype) -> int:
    """Bytes of an (n, num_features) matrix of ``dtype``."""
    return n * num_features * torch.empty(0, dtype=dtype).element_size()


def human_bytes(size: float) -> str:
    """``size`` in B, KB, MB, GB or TB (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} TB"


def _what_to_change(fusion: BackboneFusion | LazyFusion) -> str:
    if fusion.pooling == "map":
        return ("lower model.map_size (cost grows with its square) or model.map_levels, drop a backbone from "
                "model.backbones, or use model.pooling 'grid'")
    return "use model.pooling 'avg' or a smaller model.grid, or fewer model.backbones"


def check_features_fit(n: int, fusion: BackboneFusion | LazyFusion, device: torch.device | str,
                       share: float = SAFE_SHARE) -> int:
    """Raise when the (n, num_features) feature matrix would take more than ``share`` of the available host
    memory (it is filled there before any move to a GPU); return its size in bytes.

    On CUDA it also logs whether :func:`~mtl_core.accel.keep_on_device` will keep the matrix on the card.

    Raises:
        ConfigError: the matrix does not fit; the message names its size and the settings that shrink it.
    """
    size = feature_bytes(n, fusion.num_features, fusion.feature_dtype)
    available = available_memory()
    if available is not None and size > share * available:
        dtype = str(fusion.feature_dtype).removeprefix("torch.")
        raise ConfigError(f"the feature matrix of {n} images would take {human_bytes(size)} ({dtype}, "
                          f"{human_bytes(size / max(n, 1))} per image), more than {share:.0%} of the "
                          f"{human_bytes(available)} of memory available; {_what_to_change(fusion)}")
    if torch.device(device).type == "cuda":
        where = "on the device" if fits_on_device(size, device) else "in host memory (too large for the device)"
        log.info("feature matrix of %s will stay %s", human_bytes(size), where)
    return size


__all__ = ["SAFE_SHARE", "available_memory", "check_features_fit", "feature_bytes", "human_bytes"]
