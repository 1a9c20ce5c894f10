"""Hardware settings: numeric precision, memory format, ``torch.compile``, batch sizes, workers, and
out-of-memory errors that say what to change. See docs/performance.md for the measured effect of each.

Example:
    >>> resolve_precision("auto", "cpu")
    'fp32'
    >>> with precision_context("fp32", "cpu"):
    ...     pass
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from .errors import RunError

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "tf32", "fp16", "bf16")
CUDA_BATCH = 256  # extraction batch on a GPU when the config says "auto" (the reference figures' batch)
CPU_BATCH = 16


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto``: bf16 autocast on CUDA (fp16 where the card lacks bf16), fp32 elsewhere; others unchanged."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise RunError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@contextmanager
def precision_context(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the enclosed forward passes in ``precision``: autocast for fp16/bf16, TensorFloat-32 matmuls and
    convolutions for tf32 (CUDA only; the CPU runs tf32 as fp32), and true fp32 for fp32 (PyTorch would otherwise
    run CUDA convolutions in TF32)."""
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    if precision in ("fp16", "bf16"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        with torch.autocast(device.type, dtype=dtype):
            yield
        return
    if device.type == "cuda":
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        return
    yield


def use_channels_last(setting: bool | str, device: torch.device | str) -> bool:
    """``auto``: channels_last on CUDA (tensor cores want NHWC), not on the CPU."""
    return torch.device(device).type == "cuda" if setting == "auto" else bool(setting)


def extraction_batch(setting: int | str, device: torch.device | str) -> int:
    """``auto``: 256 images per batch on CUDA, 16 elsewhere."""
    if setting != "auto":
        return int(setting)
    return CUDA_BATCH if torch.device(device).type == "cuda" else CPU_BATCH


def loader_workers(setting: int | str, device: torch.device | str) -> int:
    """``auto``: on CUDA one decoding worker per spare CPU core (at most 8), so that decoding keeps up with the
    card; on the CPU none, since the backbones there are ~100x slower than decoding and workers would only take
    cores from them (docs/performance.md has the figures)."""
    if setting != "auto":
        return int(setting)
    if torch.device(device).type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class Compiled:
    """``module`` called through ``torch.compile`` when ``enabled``; when compiling fails (no C++ compiler, an
    unsupported operation), it warns once and runs ``module`` eagerly instead."""

    def __init__(self, module: Callable, enabled: bool) -> None:
        self.module, self.enabled = module, enabled
        self.call: Callable = torch.compile(module) if enabled else module
        self.proven = not enabled  # a compiled call has succeeded once

    def __call__(self, *args, **kwargs):
        if self.proven:
            return self.call(*args, **kwargs)
        try:
            out = self.call(*args, **kwargs)
        except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning("torch.compile failed (%s: %s); running eagerly", type(exc).__name__, first[:200])
            self.call, self.enabled = self.module, False
            out = self.call(*args, **kwargs)
        self.proven = True
        return out


def out_of_memory(what: str, setting: str, batch: int, device: torch.device | str) -> RunError:
    """The one-line error for an out-of-memory batch, with the setting to lower and a size that halves it."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    smaller = max(1, batch // 2)
    return RunError(f"out of {torch.device(device).type} memory {what} with batch size {batch}: set {setting}={smaller}"
                    + (" (or smaller)" if smaller > 1 else "; the model does not fit this device, use a smaller "
                       "image_size or another device"))


def fits_on_device(nbytes: int, device: torch.device | str, share: float = 0.5) -> bool:
    """True when ``nbytes`` is less than ``share`` of the free memory of a CUDA ``device`` (False elsewhere)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < share * free


def keep_on_device(tensor: torch.Tensor, device: torch.device | str, share: float = 0.5) -> torch.Tensor:
    """``tensor`` moved to a CUDA ``device`` when it takes less than ``share`` of the free memory there (a feature
    matrix then never crosses the bus again during training); unchanged otherwise."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device == device:
        return tensor
    if not fits_on_device(tensor.numel() * tensor.element_size(), device, share):
        log.info("feature matrix (%.0f MB) stays in host memory: too large for the device",
                 tensor.numel() * tensor.element_size() / 2**20)
        return tensor
    return tensor.to(device)


__all__ = ["PRECISIONS", "Compiled", "extraction_batch", "fits_on_device", "keep_on_device", "loader_workers",
           "out_of_memory", "precision_context", "resolve_precision", "use_channels_last"]
