"""Whole runs: preparing, training and evaluating (with cross-validation), comparing, predicting."""

from __future__ import annotations

from .compare import compare
from .pipeline import execute
from .predict import load_run, predict_images
from .run import build_tasks, check_model_for_tasks, effective_model, prepare

__all__ = [
    "build_tasks", "check_model_for_tasks", "compare", "effective_model", "execute", "load_run", "predict_images",
    "prepare"
]
