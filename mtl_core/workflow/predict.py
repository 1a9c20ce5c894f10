"""``mtl predict``: load a finished run folder and predict every task for new images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import ModelConfig
from ..data import load_image_tensor
from ..errors import MTLError, RunError
from ..evaluate import DistanceCheck
from ..features import BackboneFusion, build_fusion
from ..io import read_image, read_run_model, run_file
from ..model import MultiTaskModel, create_model
from ..plugins import load_plugin
from ..tasks import Task, task_from_schema

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    """A trained model ready for images."""

    model: MultiTaskModel
    tasks: list[Task]
    image_size: int
    reader: Any
    check: DistanceCheck | None = None  # out-of-distribution check calibrated when the run was trained
    schema: dict[str, Any] = field(default_factory=dict)  # the model.json it was rebuilt from


def plugin_reader(plugin_name: str):
    """The plugin's image reader when it is installed; plugins named by a file path are never loaded here, and a
    run saved from the library without a plugin reads with the core reader."""
    if not plugin_name or ".py:" in plugin_name or plugin_name.endswith(".py"):
        return read_image
    try:
        return load_plugin(plugin_name).read_image
    except MTLError as exc:
        log.warning("plugin %r unavailable (%s); reading images with the core reader", plugin_name, exc)
        return read_image


def load_run(run_dir: Path) -> LoadedRun:
    """Rebuild the model of ``run_dir`` from ``model.json`` and ``model.safetensors`` (no pickle anywhere), through
    :func:`~mtl_core.model.create_model` as training built it.

    Raises:
        RunError: the folder is not a finished run folder of this format, or its files do not fit each other.
    """
    saved = read_run_model(Path(run_dir))
    schema, state = saved.schema, saved.state
    reader = plugin_reader(str(schema.get("plugin", "")))  # first: importing the plugin registers its task kinds
    try:
        tasks = [task_from_schema(t) for t in schema["tasks"]]
        model_cfg = ModelConfig.model_validate(schema["model"])
        size, seed = int(schema["image_size"]), int(schema["seed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{saved.schema_file} is not a valid task schema ({exc})") from None
    fusion_state = {k.removeprefix("fusion."): v for k, v in state.items() if k.startswith("fusion.")}
    fusion = _fusion(_weights_from_folder(saved.schema_file, model_cfg, bool(fusion_state)), size, seed)
    if fusion_state:
        try:
            fusion.load_state_dict(fusion_state)
        except RuntimeError as exc:
            raise RunError(f"the backbone tensors of {saved.weights_file} do not fit the backbones of its "
                           f"model.json ({str(exc).splitlines()[-1].strip()})") from None
    elif fusion.checksum() != schema.get("backbone_checksum"):
        raise RunError(f"the backbones rebuilt for {saved.folder} differ from the ones it was trained with (other "
                       f"weights file or library version); predict where the run was made")
    model = create_model(fusion, tasks, model_cfg.trunk.model_dump(), model_cfg.share_heatmap)
    try:
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fusion.")},
                                                    strict=False)
    except RuntimeError as exc:  # a tensor of another shape than model.json describes
        raise RunError(f"{saved.weights_file} does not fit its model.json ({str(exc).splitlines()[-1].strip()})"
                       ) from None
    missing = [k for k in missing if not k.startswith("fusion.")]
    if missing or unexpected:
        raise RunError(f"{saved.weights_file} does not fit its model.json ({len(missing)} missing, "
                       f"{len(unexpected)} unexpected tensors)")
    model.eval()
    ood = run_file(saved.folder, "ood.safetensors")
    return LoadedRun(model, tasks, size, reader, DistanceCheck.load(ood) if ood.is_file() else None, schema)


def _weights_from_folder(schema_file: Path, model_cfg: ModelConfig, has_tensors: bool) -> ModelConfig:
    """``model_cfg`` with every backbone that ``model.json`` says came from a weights file rebuilt from the run
    folder's own tensors (``has_tensors``): a file path in a run folder is never read, wherever it points."""
    asked = model_cfg.weights
    names = model_cfg.backbones
    weights = dict(asked) if isinstance(asked, dict) else dict.fromkeys(names, asked)
    files = {name: w for name, w in weights.items() if w not in ("pretrained", "random")}
    if not files:
        return model_cfg
    if not has_tensors:
        name, path = next(iter(files.items()))
        raise RunError(f"{schema_file} names the weights file {path} for backbone {name!r}, and its run folder holds "
                       f"no backbone tensors; mtl predict reads a run's weights only from its run folder: write the "
                       f"run again with this mtl_core (it stores them in model.safetensors)")
    return model_cfg.model_copy(update={"weights": weights | dict.fromkeys(files, "random")})


def _fusion(model_cfg: ModelConfig, image_size: int, seed: int) -> BackboneFusion:
    """The run's backbones, built now (images go through them) from the weights recorded per backbone, never
    downloaded: weights that cannot be had are an error here, not a random initialisation."""
    strict = model_cfg.model_copy(update={"allow_download": False, "on_missing_weights": "error"})
    return build_fusion(strict, image_size, seed)


def describe_prediction(task: Task, output: torch.Tensor) -> dict[str, Any]:
    """One task's prediction for one image in the task's own terms (:meth:`Task.describe_prediction`)."""
    return task.describe_prediction(output)


@dataclass(frozen=True, eq=False)  # holds tensors: compared by identity
class Predicted:
    """A run's raw outputs on some images.

    Attributes:
        images: the image paths, as given.
        outputs: task -> head outputs of every image, (N, ...).
        ood_scores: out-of-distribution score per image (1 = the calibrated threshold), or None without a check.
    """

    images: list[str]
    outputs: dict[str, torch.Tensor]
    ood_scores: np.ndarray | None = None

    def one(self, i: int) -> dict[str, torch.Tensor]:
        """The outputs of image ``i``, each (1, ...)."""
        return {name: out[i:i + 1] for name, out in self.outputs.items()}


@torch.no_grad()
def run_images(run: LoadedRun, images: list[Path]) -> Predicted:
    """Read, resize and predict each image (one at a time: images can be large), with its out-of-distribution
    score when the run has a check."""
    if not images:
        raise RunError("no images to predict: give one or more image files")
    outputs: dict[str, list[torch.Tensor]] = {t.name: [] for t in run.tasks}
    scores = []
    for path in images:
        tensor = load_image_tensor(Path(path), run.reader, run.image_size).unsqueeze(0)  # (1, C, S, S)
        features = run.model.fusion(tensor)
        for name, out in run.model.forward_features(features).items():
            outputs[name].append(out)
        if run.check is not None:
            scores.append(float(run.check.scores(run.model.embedding(features))[0]))
    return Predicted([str(p) for p in images], {k: torch.cat(v) for k, v in outputs.items()},
                     np.asarray(scores, np.float64) if run.check is not None else None)


def predict_images(run: LoadedRun, images: list[Path]) -> list[dict[str, Any]]:
    """Predictions for each image: {"image": path, task: :meth:`Task.describe_prediction` output}; built-in kinds
    give {"prediction": ..., "probability" | "unit": ...}. With the run's out-of-distribution check,
    ``out_of_distribution`` holds the image's distance score (1 = the calibrated threshold) and whether it is
    flagged: its predictions are then not to be trusted."""
    return prediction_rows(run, run_images(run, images))


def prediction_rows(run: LoadedRun, predicted: Predicted) -> list[dict[str, Any]]:
    """The rows of :func:`predict_images` from outputs already computed (``mtl predict --format json``)."""
    rows = []
    for i, image in enumerate(predicted.images):
        one = predicted.one(i)
        row = {"image": image} | {t.name: describe_prediction(t, one[t.name]) for t in run.tasks}
        if predicted.ood_scores is not None:
            score = float(predicted.ood_scores[i])
            row["out_of_distribution"] = {"score": round(score, 3), "flagged": score > 1.0}
        rows.append(row)
    return rows


#: unit of the probability columns of :func:`prediction_frame`
PROBABILITY = "probability"


def prediction_frame(run: LoadedRun, predicted: Predicted) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per image, one column per value, and each column's unit (``mtl predict --format csv``).

    The columns are those of the run's ``predictions.csv`` without the ``_pred`` suffix: ``image``, then per
    task its value column(s) (a class task: the class name ``<task>``; a regression task: ``<task>``; a point
    task: its components, ``x``, ``y`` and the extent) and its extra outputs (``<task>_prob``, a point task's
    ``<task>_presence``), then ``out_of_distribution`` (1 when flagged, else 0) and
    ``out_of_distribution_score`` when the run has a check. Every value is a number but class names.

    Returns:
        The frame and {column: unit}: ``class`` for a class name, ``probability`` for a value in [0, 1], "" for a
        number without a unit.
    """
    frame = pd.DataFrame({"image": predicted.images})
    units = {"image": "path"}
    for task in run.tasks:
        out = predicted.outputs[task.name]
        said = describe_prediction(task, out[:1])  # its units, for a task kind the engine does not know
        for column, values in task.table_columns(task.decode(out), "pred").items():
            name = column.removesuffix("_pred")
            frame[name] = values
            units[name] = "class" if values and isinstance(values[0], str) else str(
                said.get(f"{name}_unit", said.get("unit", "")))
        for column, values in task.output_columns(out).items():
            frame[column] = values
            units[column] = PROBABILITY if column.endswith(("_prob", "_presence")) else ""
    if predicted.ood_scores is not None:
        frame["out_of_distribution"] = (predicted.ood_scores > 1.0).astype(int)
        frame["out_of_distribution_score"] = np.round(predicted.ood_scores, 4)
        units |= {"out_of_distribution": "1 = flagged", "out_of_distribution_score": "1 = threshold"}
    return frame, units


def format_table(frame: pd.DataFrame, units: dict[str, str]) -> str:
    """The prediction frame as an aligned text table for a terminal (``mtl predict --format table``): a class
    with its probability in one cell (``malignant (0.65)``), units in the header (``size (mm)``), numbers
    right-aligned with at most 4 decimals, and the out-of-distribution flag as ``YES``/``no`` with its score."""
    shown: dict[str, list[str]] = {}
    numeric: set[str] = set()  # headers of right-aligned columns
    for column in frame.columns:
        if column.endswith("_prob") and column.removesuffix("_prob") in frame or column == "out_of_distribution_score":
            continue  # shown with its class, or with the flag
        unit = units.get(column, "")
        header = column if unit in ("", "path", "class", PROBABILITY) else f"{column} ({unit})"
        values = [_table_cell(v) for v in frame[column]]
        if f"{column}_prob" in frame:
            values = [f"{v} ({p:.2f})" for v, p in zip(values, frame[f"{column}_prob"], strict=True)]
        elif column == "out_of_distribution":
            header = "out_of_distribution (score)"
            values = [f"{'YES' if flag else 'no'} ({score:.2f})" for flag, score in
                      zip(frame["out_of_distribution"], frame["out_of_distribution_score"], strict=True)]
        elif pd.api.types.is_numeric_dtype(frame[column]):
            numeric.add(header)
        shown[header] = values
    widths = {h: max([len(h)] + [len(c) for c in cells]) for h, cells in shown.items()}
    lines = ["  ".join(h.ljust(w) for h, w in widths.items()).rstrip(), "  ".join("-" * w for w in widths.values())]
    for i in range(len(frame)):
        lines.append("  ".join(cells[i].rjust(widths[h]) if h in numeric else cells[i].ljust(widths[h])
                               for h, cells in shown.items()).rstrip())
    return "\n".join(lines)


def _table_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{float(value):.4g}"
    return " ".join(str(value).split())  # one line per image whatever a class name holds
