"""Whole runs: preparing, training and evaluating (with cross-validation), comparing, predicting."""

from __future__ import annotations

from .checks import CheckedRun, build_tasks, check_model_for_tasks, check_run, effective_model
from .compare import compare
from .pipeline import execute
from .predict import load_run, predict_images
from .run import prepare

__all__ = [
    "CheckedRun", "build_tasks", "check_model_for_tasks", "check_run", "compare", "effective_model", "execute",
    "load_run", "predict_images", "prepare"
]
