"""``mtl run``: a whole run from config to run folder."""

from __future__ import annotations

import hashlib
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .backbones import BackboneFusion
from .config import RunConfig
from .features import library_versions
from .outputs import atomic_write, save_weights, write_csv, write_json
from .plugins import plugin_version
from .report import console_table, markdown_report
from .run import (
    Fitted,
    Prepared,
    Say,
    build_fusion,
    cache_dir,
    compute_inputs,
    effective_model,
    evaluate,
    label_counts,
    make_split,
    prepare,
    train_and_predict,
)
from .tasks import BinaryTask, ClassificationTask, Task


@dataclass
class RunResult:
    """Where a run wrote its files and what it measured."""

    output: Path
    metrics: dict[str, Any]
    table: str


def backbone_checksum(fusion: BackboneFusion) -> str:
    """Digest of every backbone tensor: ``mtl predict`` checks it rebuilt the very same backbones."""
    digest = hashlib.sha256()
    for key, value in sorted(fusion.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def weights_used(fusion: BackboneFusion, model_cfg) -> dict[str, str]:
    """Per backbone, what was actually loaded: "random" when pretrained weights could not be had."""
    asked = model_cfg.weights
    return {i.name: "random" if i.weights == "random" else (asked.get(i.name, "pretrained")
                                                             if isinstance(asked, dict) else asked)
            for i in fusion.infos}


def _value_names(task: Task, values: np.ndarray) -> list[Any]:
    if isinstance(task, ClassificationTask | BinaryTask):
        return ["" if np.isnan(v) else task.classes[int(v)] for v in values]
    return [None if np.isnan(v) else float(v) for v in values]


def predictions_frame(tasks: list[Task], prep: Prepared, fitted: Fitted) -> pd.DataFrame:
    """One row per held-out case: truth and prediction (and class probability) for every task."""
    test = prep.records.subset(fitted.split["test"])
    frame = pd.DataFrame({"id": test.ids})
    for task in tasks:
        out = fitted.outputs[task.name]
        frame[f"{task.name}_true"] = _value_names(task, np.asarray(test.targets[task.name], np.float64))
        frame[f"{task.name}_pred"] = _value_names(task, task.decode(out))
        if isinstance(task, ClassificationTask | BinaryTask):
            frame[f"{task.name}_prob"] = np.round(task.probabilities(out).max(axis=1), 4)
    return frame


def model_schema(config: RunConfig, prep: Prepared, fusion: BackboneFusion, model_cfg, image_size: int,
                 tasks: list[Task]) -> dict[str, Any]:
    """Everything ``mtl predict`` needs to rebuild the model, as JSON."""
    return {
        "format": "mtl-run/1",
        "plugin": config.plugin,
        "plugin_options": config.plugin_options,
        "image_size": image_size,
        "seed": config.train.seed,
        "model": model_cfg.model_dump() | {"weights": weights_used(fusion, model_cfg)},
        "backbones": fusion.describe(),
        "backbone_checksum": backbone_checksum(fusion),
        "tasks": [t.describe() for t in tasks],
    }


def _summary(config: RunConfig, prep: Prepared, fusion: BackboneFusion, fallback: str | None, image_size: int,
             wall: float, stats: dict[str, int]) -> dict[str, Any]:
    return {
        "plugin": f"{config.plugin} {plugin_version(prep.plugin)}",
        "data": str(prep.data_dir),
        "cases": len(prep.records),
        "backbones": ", ".join(f"{i.name} ({i.weights})" for i in fusion.infos),
        "weights": "RANDOM INITIALISATION" if fusion.uses_random_weights else "pretrained",
        "fallback": fallback or "none",
        "pooling": f"{fusion.backbones[0].pooling}" + (f" {fusion.backbones[0].grid}x{fusion.backbones[0].grid}"
                                                      if fusion.backbones[0].pooling == "grid" else ""),
        "backbones_frozen": fusion.frozen,
        "image_size": image_size,
        "loss_weighting": config.loss.strategy,
        "seed": config.train.seed,
        "feature_cache": stats or "not used",
        "versions": library_versions() | {"python": platform.python_version()},
        "wall_time_s": round(wall, 1),
    }


def execute(config: RunConfig, *, data: Path | None = None, output: Path | None = None, say: Say = print,
            progress: Callable | None = None) -> RunResult:
    """Run everything and write the run folder. Bad input fails before anything is written."""
    start = time.perf_counter()
    prep = prepare(config, data, say)
    model_cfg, image_size, fallback = effective_model(config)
    if fallback:
        say(f"NOTE: {fallback}")
    fusion = build_fusion(model_cfg, image_size, config.train.seed)
    if fusion.uses_random_weights:
        say("WARNING: backbones use RANDOM INITIALISATION (no pretrained weights); this is recorded in the outputs")
    say(f"caches: {cache_dir()} (set MTL_CACHE_DIR to move them)")
    inputs, is_features, stats = compute_inputs(prep, fusion, config, image_size, progress)
    split = make_split(prep.records, prep.plugin, config)
    fitted = train_and_predict(prep.tasks, prep.records, inputs, is_features, fusion, model_cfg, config, split,
                               progress=progress)
    tasks_metrics = evaluate(prep.tasks, prep.records, fitted)
    for task in prep.tasks:
        tasks_metrics[task.name]["unit"] = task.unit
    summary = _summary(config, prep, fusion, fallback, image_size, time.perf_counter() - start, stats)
    metrics = {"tasks": tasks_metrics, "label_counts": label_counts(prep.tasks, prep.records, split),
               "run": summary, "notes": prep.notes + ([fallback] if fallback else [])}
    out = Path(output or config.output)
    _write_run(out, config, prep, fusion, model_cfg, image_size, fitted, metrics, summary)
    return RunResult(out, metrics, console_table(tasks_metrics))


def _write_run(out: Path, config: RunConfig, prep: Prepared, fusion: BackboneFusion, model_cfg, image_size: int,
               fitted: Fitted, metrics: dict[str, Any], summary: dict[str, Any]) -> None:
    atomic_write(out / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    save_weights(out / "model.safetensors", fitted.model.head_state_dict(), {"format": "mtl-run/1"})
    write_json(out / "model.json", model_schema(config, prep, fusion, model_cfg, image_size, prep.tasks))
    write_json(out / "history.json", {"train": fitted.history.train, "val": fitted.history.val,
                                      "weights": fitted.history.weights, "best_epoch": fitted.history.best_epoch})
    write_json(out / "split.json", {k: [prep.records.ids[i] for i in v] for k, v in fitted.split.items()})
    write_csv(out / "predictions.csv", predictions_frame(prep.tasks, prep, fitted))
    atomic_write(out / "report.md", markdown_report(summary, metrics))
    write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run


