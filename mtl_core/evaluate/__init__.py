"""Scoring outputs against targets, and the out-of-distribution check."""

from __future__ import annotations

from .bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_ci95
from .ood import DistanceCheck, fit_check
from .scores import Validation, evaluate_outputs

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "DistanceCheck", "Validation", "bootstrap_ci95",
           "evaluate_outputs", "fit_check"]
