"""``mtl explain``: saliency overlays of a finished run for images, per task; and the few overlays per task that
report.html shows beside the prediction and the truth."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import load_image_tensor
from ..errors import RunError
from ..explain import ExplainError, Saliency, find_task, saliency, saliency_maps, write_overlay
from ..tasks import Task
from .predict import LoadedRun, load_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Overlay:
    """One written overlay: the image, the task, what the map explains and the PNG file."""

    image: str
    task: str
    target: str
    method: str
    file: Path


def explain_images(run_dir: Path, images: list[Path], task: str, output: Path, wanted: str | None = None,
                   method: str = "gradcam", run: LoadedRun | None = None) -> list[Overlay]:
    """Write one overlay PNG per image for ``task`` into ``output`` (``<image stem>.<task>.png``).

    Args:
        wanted: the class to explain (name or index); None: each image's predicted class.
        method: "gradcam" or "gradcampp" (a point task always shows its heatmap).
        run: the run already loaded (else read from ``run_dir``).

    Raises:
        RunError: no images, an unknown task, class or method, or an output folder that cannot be written.
    """
    if not images:
        raise RunError("no images to explain: give one or more image files")
    run = run if run is not None else load_run(Path(run_dir))
    chosen = find_task(run.tasks, task)
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, permissions, a full disk: one line
        raise RunError(f"cannot write {output}: {exc.strerror or exc}; give a folder for the overlays") from None
    written, used = [], set()
    for path in images:
        tensor = load_image_tensor(Path(path), run.reader, run.image_size).unsqueeze(0)  # (1, C, S, S)
        found = saliency(run.model, chosen, tensor, wanted, method)
        name = _unique(f"{_safe(Path(path).stem)}.{chosen.name}.png", used)
        file = write_overlay(output / name, tensor[0].numpy(), found.map)
        written.append(Overlay(str(path), chosen.name, found.target, found.method, file))
    return written


def _safe(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "image"


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``name`` with a counter when two images share a stem."""
    candidate, i = name, 1
    while candidate in used:
        i += 1
        candidate = name.replace(".png", f"-{i}.png")
    used.add(candidate)
    return candidate


def maps_for(run: LoadedRun, image: Path, task: str, method: str = "gradcam") -> tuple[np.ndarray, Saliency]:
    """The input image (C, S, S) and its map for ``task`` (for tests and reports that draw their own)."""
    tensor = load_image_tensor(Path(image), run.reader, run.image_size).unsqueeze(0)
    return tensor[0].numpy(), saliency(run.model, find_task(run.tasks, task), tensor, None, method)


def report_overlays(run_dir: Path, predictions: pd.DataFrame, images: dict[str, Path], per_task: int = 3,
                    method: str = "gradcam") -> dict[str, list[dict[str, str]]]:
    """Overlays of the first ``per_task`` held-out cases (rows of ``predictions.csv``) for every task, written as
    ``run_dir/figures/saliency_<task>_<case>.png``: {task: [{"file", "id", "target", "prediction", "truth"}]} for
    report.html. The prediction is the saved model's own for that image (the one the map explains), the truth
    predictions.csv's. The model is rebuilt from the run folder, so a frozen run (trained on cached features)
    builds its backbones here."""
    ids = list(dict.fromkeys(str(i) for i in predictions["id"] if str(i) in images))[:per_task] \
        if per_task > 0 and "id" in predictions else []
    if not ids:
        return {}
    run = load_run(Path(run_dir))
    folder = Path(run_dir) / "figures"  # flat: a fresh claim of the run folder clears figures/*.png
    folder.mkdir(parents=True, exist_ok=True)
    rows = predictions.assign(id=predictions["id"].astype(str)).drop_duplicates("id").set_index("id")
    batch = torch.stack([load_image_tensor(images[case], run.reader, run.image_size) for case in ids])  # (N, C, S, S)
    with torch.no_grad():
        outputs = run.model(batch)
    shown: dict[str, list[dict[str, str]]] = {}
    for task in run.tasks:
        try:
            maps = saliency_maps(run.model, task, batch, None, method)
        except ExplainError as exc:  # one task the report cannot explain leaves the others their overlays
            log.warning("no saliency overlays for task %r: %s", task.name, exc)
            continue
        for i, (case, found) in enumerate(zip(ids, maps, strict=True)):
            file = write_overlay(folder / f"saliency_{task.name}_{_safe(case)}.png", batch[i].numpy(), found.map)
            shown.setdefault(task.name, []).append({
                "file": file.relative_to(run_dir).as_posix(), "id": case, "target": found.target,
                "prediction": _said(task.describe_prediction(outputs[task.name][i:i + 1])),
                "truth": _cell(rows, case, task)})
    return shown


def _said(described: dict) -> str:
    """:meth:`Task.describe_prediction` as short text: ``malignant (p 0.81)``, ``12.3 mm``, ``x 40.1, y 22.0``."""
    if "prediction" in described:
        value = described["prediction"]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        extra = f" (p {described['probability']:.2f})" if "probability" in described else \
            f" {described.get('unit', '')}".rstrip()
        return text + extra
    return ", ".join(f"{k} {v:.3g}" for k, v in described.items() if isinstance(v, float) and not k.endswith("unit"))


def _cell(rows: pd.DataFrame, case: str, task: Task, which: str = "true") -> str:
    """A task's value(s) for one case from predictions.csv's columns (``<task>_pred``, a point task's ``x_pred``,
    ``y_pred``...), as text; "-" where missing."""
    blank = np.full((1,) if task.target_width == 1 else (1, task.target_width), np.nan)
    columns = [c for c in task.table_columns(blank, which) if c in rows.columns]
    values = [rows.at[case, c] for c in columns]
    return ", ".join("-" if pd.isna(v) or v == "" else (f"{v:.3g}" if isinstance(v, float) else str(v))
                     for v in values) or "-"
