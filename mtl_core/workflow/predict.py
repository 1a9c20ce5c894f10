"""``mtl predict``: load a finished run folder and predict every task for new images."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..data import load_image_tensor
from ..errors import MTLError, RunError
from ..evaluate import DistanceCheck
from ..features import BackboneFusion, build_fusion
from ..io import read_image, read_run_model
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


def _reader(plugin_name: str):
    """The plugin's image reader when it is installed; plugins named by a file path are never loaded here."""
    if ".py:" in plugin_name or plugin_name.endswith(".py"):
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
    reader = _reader(str(schema.get("plugin", "")))  # first: importing the plugin registers its task kinds
    try:
        tasks = [task_from_schema(t) for t in schema["tasks"]]
        model_cfg = ModelConfig.model_validate(schema["model"])
        size, seed = int(schema["image_size"]), int(schema["seed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{saved.schema_file} is not a valid task schema ({exc})") from None
    fusion = _fusion(model_cfg, size, seed)
    fusion_state = {k.removeprefix("fusion."): v for k, v in state.items() if k.startswith("fusion.")}
    if fusion_state:
        fusion.load_state_dict(fusion_state)
    elif fusion.checksum() != schema.get("backbone_checksum"):
        raise RunError(f"the backbones rebuilt for {saved.folder} differ from the ones it was trained with (other "
                       f"weights file or library version); predict where the run was made")
    model = create_model(fusion, tasks, model_cfg.trunk.model_dump(), model_cfg.share_heatmap)
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fusion.")},
                                                strict=False)
    missing = [k for k in missing if not k.startswith("fusion.")]
    if missing or unexpected:
        raise RunError(f"{saved.weights_file} does not fit its model.json ({len(missing)} missing, "
                       f"{len(unexpected)} unexpected tensors)")
    model.eval()
    ood = saved.folder / "ood.safetensors"
    return LoadedRun(model, tasks, size, reader, DistanceCheck.load(ood) if ood.is_file() else None)


def _fusion(model_cfg: ModelConfig, image_size: int, seed: int) -> BackboneFusion:
    """The run's backbones, built now (images go through them) from the weights recorded per backbone, never
    downloaded: weights that cannot be had are an error here, not a random initialisation."""
    strict = model_cfg.model_copy(update={"allow_download": False, "on_missing_weights": "error"})
    return build_fusion(strict, image_size, seed)


def describe_prediction(task: Task, output: torch.Tensor) -> dict[str, Any]:
    """One task's prediction for one image in the task's own terms (:meth:`Task.describe_prediction`)."""
    return task.describe_prediction(output)


@torch.no_grad()
def predict_images(run: LoadedRun, images: list[Path]) -> list[dict[str, Any]]:
    """Predictions for each image: {"image": path, task: :meth:`Task.describe_prediction` output}; built-in kinds
    give {"prediction": ..., "probability" | "unit": ...}. With the run's out-of-distribution check,
    ``out_of_distribution`` holds the image's distance score (1 = the calibrated threshold) and whether it is
    flagged: its predictions are then not to be trusted."""
    rows = []
    for path in images:
        tensor = load_image_tensor(Path(path), run.reader, run.image_size).unsqueeze(0)  # (1, C, S, S)
        features = run.model.fusion(tensor)
        outputs = run.model.forward_features(features)
        row = {"image": str(path)} | {t.name: describe_prediction(t, outputs[t.name]) for t in run.tasks}
        if run.check is not None:
            score = float(run.check.scores(run.model.embedding(features))[0])
            row["out_of_distribution"] = {"score": round(score, 3), "flagged": score > 1.0}
        rows.append(row)
    return rows
