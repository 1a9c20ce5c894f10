"""A finished run outside PyTorch: ``mtl export`` (one ONNX graph with the task schema in its metadata) and
``mtl predict --engine onnx`` (that graph run with onnxruntime, printing the same table as the PyTorch engine)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import load_image_tensor
from ..errors import RunError
from ..export import DistanceReference, export_onnx, load_onnx, onnx_columns
from ..io import read_json, run_file
from .predict import load_run, plugin_reader, prediction_frame, prediction_rows, run_images

#: the graph's file name in a run folder (``mtl export`` without ``--output``)
ONNX_FILE = "model.onnx"
ENGINES = ("torch", "onnx")


def export_run(run_dir: Path, output: Path | None = None, fmt: str = "onnx") -> Path:
    """Export the model of ``run_dir`` as one ONNX graph (default ``RUN_DIR/model.onnx``).

    Raises:
        RunError: ``fmt`` is not ``onnx``, or the run is not a finished run folder.
        ExportError: a part of the model the graph cannot express, named.
    """
    if fmt != "onnx":
        raise RunError(f"unknown export format {fmt!r}; mtl export writes 'onnx'")
    run = load_run(Path(run_dir))
    schema = run.schema
    check = run.check
    distance = None if check is None else DistanceReference(check.reference, check.k, check.threshold)
    extra = {"mtl.run": json.dumps({"plugin": schema.get("plugin", ""), "backbones": run.model.fusion.describe(),
                                    "frozen": bool(run.model.fusion.frozen),
                                    "tasks_schema": schema.get("tasks", [])})}
    if check is not None:
        extra["mtl.ood"] = json.dumps({"k": check.k, "threshold": check.threshold, "quantile": check.quantile,
                                       "meaning": "out_of_distribution_score > 1: farther from the training images "
                                                  "than that quantile of held-out cases"})
    target = Path(output) if output is not None else run_file(Path(run_dir), ONNX_FILE)
    return export_onnx(run.model, run.tasks, target, image_size=run.image_size,
                       reader=f"plugin {schema.get('plugin')!r}" if schema.get("plugin") else "core", distance=distance,
                       extra=extra)


@dataclass(frozen=True, eq=False)
class EnginePrediction:
    """What ``mtl predict`` prints, from either engine.

    Attributes:
        frame: one row per image, one column per value (:func:`~mtl_core.workflow.prediction_frame`).
        units: {column: unit}.
        rows: the ``--format json`` rows (the PyTorch engine), else None.
        quantile: the held-out quantile behind the out-of-distribution threshold, or None without a check.
    """

    frame: pd.DataFrame
    units: dict[str, str]
    rows: list[dict[str, Any]] | None
    quantile: float | None


def predict_with(run_dir: Path, images: list[Path], engine: str = "torch",
                 onnx_file: Path | None = None) -> EnginePrediction:
    """Predict ``images`` with the run's PyTorch model (``torch``) or its exported graph (``onnx``: ``onnx_file``,
    default ``RUN_DIR/model.onnx``)."""
    if engine not in ENGINES:
        raise RunError(f"unknown engine {engine!r}; use 'torch' or 'onnx'")
    if engine == "torch":
        run = load_run(Path(run_dir))
        predicted = run_images(run, images)
        frame, units = prediction_frame(run, predicted)
        return EnginePrediction(frame, units, prediction_rows(run, predicted),
                                None if run.check is None else run.check.quantile)
    frame, units, meta = onnx_frame(Path(run_dir), images, onnx_file)
    ood = json.loads(meta["mtl.ood"]) if "mtl.ood" in meta else None
    return EnginePrediction(frame, units, None, None if ood is None else float(ood["quantile"]))


def onnx_frame(run_dir: Path, images: list[Path], onnx_file: Path | None = None
               ) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """The prediction frame of ``images`` from the exported graph, decoded with its metadata alone; the images
    are read with the run's reader (its plugin's) at the graph's image size. Also returns the graph's metadata."""
    if not images:
        raise RunError("no images to predict: give one or more image files")
    model = load_onnx(onnx_file if onnx_file is not None else run_file(Path(run_dir), ONNX_FILE))
    schema = read_json(run_file(Path(run_dir), "model.json"))
    reader = plugin_reader(str(schema.get("plugin", "") if isinstance(schema, dict) else ""))
    parts: dict[str, list[np.ndarray]] = {}
    for path in images:  # one at a time, as the PyTorch engine: images can be large
        pixels = load_image_tensor(Path(path), reader, model.image_size).unsqueeze(0).numpy()  # (1, C, S, S)
        for name, value in model.run(pixels).items():
            parts.setdefault(name, []).append(value)
    outputs = {name: np.concatenate(values) for name, values in parts.items()}
    columns, units = onnx_columns(model, outputs)
    frame = pd.DataFrame({"image": [str(p) for p in images]} | columns)
    return frame, {"image": "path"} | units, model.metadata
