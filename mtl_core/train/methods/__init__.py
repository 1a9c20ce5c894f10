"""The gradient-level and stochastic multi-task methods, one small module each, registered in
:data:`~mtl_core.train.losses.WEIGHTINGS` when this package is imported (``mtl_core.train`` imports it)."""

from __future__ import annotations

from . import aligned_mtl, cagrad, famo, gradnorm, gradvac, imtl, mgda, nash_mtl, pcgrad, rlw

__all__ = ["aligned_mtl", "cagrad", "famo", "gradnorm", "gradvac", "imtl", "mgda", "nash_mtl", "pcgrad", "rlw"]
