"""Scoring outputs against targets, and the out-of-distribution check."""

from __future__ import annotations

from .ood import DistanceCheck, fit_check
from .scores import evaluate_outputs

__all__ = ["DistanceCheck", "evaluate_outputs", "fit_check"]
