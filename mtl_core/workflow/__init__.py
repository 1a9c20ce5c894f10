"""Whole runs: preparing, training and evaluating (with cross-validation), comparing, predicting."""

from __future__ import annotations

from .api import RunOutcome, predict, save_run  # api.run: mtl_core.run (here .run is the module)
from .checks import CheckedRun, build_tasks, check_model_for_tasks, check_run, effective_model
from .compare import compare
from .pipeline import execute
from .predict import (
    LoadedRun,
    Predicted,
    format_table,
    load_run,
    predict_images,
    prediction_frame,
    prediction_rows,
    run_images,
)
from .run import prepare

__all__ = [
    "CheckedRun", "build_tasks", "check_model_for_tasks", "check_run", "compare", "effective_model", "execute",
    "load_run", "predict_images", "prepare", "LoadedRun", "Predicted", "format_table", "prediction_frame",
    "prediction_rows", "run_images", "RunOutcome", "predict", "save_run"
]
