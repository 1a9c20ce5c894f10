"""``mtl run``: a whole run from config to run folder."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..config import RunConfig
from ..data import small_strata
from ..evaluate import fit_check
from ..features import BackboneFusion, library_versions
from ..io import atomic_write, save_weights, write_csv, write_json
from ..plugins import plugin_version
from ..report import CaseImages, console_table, markdown_report, write_figures, write_html
from ..tasks import Task
from ..train import open_run_checkpoints, training_key
from .crossval import aggregate, delta_m, run_folds, strata_breakdown
from .run import (
    Fitted,
    Prepared,
    Say,
    build_fusion,
    cache_dir,
    check_model_for_tasks,
    compute_inputs,
    effective_model,
    final_split,
    label_counts,
    make_splits,
    prepare,
    train_and_predict,
)


@dataclass
class RunResult:
    """Where a run wrote its files and what it measured."""

    output: Path
    metrics: dict[str, Any]
    table: str


def weights_used(fusion: BackboneFusion, model_cfg) -> dict[str, str]:
    """Per backbone, what was actually loaded: "random" when pretrained weights could not be had."""
    asked = model_cfg.weights
    return {i.name: "random" if i.weights == "random" else (asked.get(i.name, "pretrained")
                                                             if isinstance(asked, dict) else asked)
            for i in fusion.infos}


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
        "backbone_checksum": fusion.checksum(),
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
        "pooling": _pooling(fusion),
        "weights_ids": {i.name: i.weights_id for i in fusion.infos},
        "backbones_frozen": fusion.frozen,
        "image_size": image_size,
        "share_heatmap": config.model.share_heatmap,
        "loss_weighting": config.loss.strategy,
        "seed": config.train.seed,
        "feature_cache": stats or "not used",
        "versions": library_versions() | {"python": platform.python_version()},
        "wall_time_s": round(wall, 1),
    }


def _pooling(fusion: BackboneFusion) -> str:
    if fusion.pooling == "grid":
        return f"grid {fusion.grid}x{fusion.grid}"
    if fusion.pooling == "map":
        c, h, w = fusion.map_shape
        return f"map {h}x{w}, {c} channels ({getattr(fusion, 'map_levels', '?')} levels per backbone)"
    return fusion.pooling


def execute(config: RunConfig, *, data: Path | None = None, output: Path | None = None, say: Say = print,
            progress: Callable | None = None, resume: bool = False) -> RunResult:
    """Run everything and write the run folder. Bad input fails before anything is written.

    Every training is checkpointed after each epoch in ``OUTPUT/checkpoints/``; ``resume`` continues an
    interrupted run from there (features come back from the cache), ending exactly as an uninterrupted run.
    """
    start = time.perf_counter()
    prep = prepare(config, data, say)
    out = Path(output or config.output)
    checkpoints = open_run_checkpoints(out, config, prep.records, resume=resume, say=say)
    model_cfg, image_size, fallback = effective_model(config)
    check_model_for_tasks(model_cfg, prep.tasks)
    if fallback:
        say(f"NOTE: {fallback}")
    fusion = build_fusion(model_cfg, image_size, config.train.seed)
    if fusion.uses_random_weights:
        say("WARNING: backbones use RANDOM INITIALISATION (no pretrained weights); this is recorded in the outputs")
    say(f"caches: {cache_dir()} (set MTL_CACHE_DIR to move them)")
    inputs, is_features, stats = compute_inputs(prep, fusion, config, image_size, progress)

    def train(tasks: list[Task], split: dict[str, Any]) -> Fitted:
        return train_and_predict(tasks, prep.records, inputs, is_features, fusion, model_cfg, config, split,
                                 progress=progress, checkpoint=checkpoints.path(training_key(split, tasks, prep.tasks)))

    splits = make_splits(prep.records, prep.plugin, config)
    results = run_folds(prep.tasks, prep.records, splits, train, config.evaluation.wants_single_task(), say)
    final = results[0].fitted if len(results) == 1 else train(prep.tasks, final_split(prep.records, prep.plugin,
                                                                                      config))
    predictions = pd.concat([r.predictions for r in results], ignore_index=True)
    tasks_metrics = aggregate(prep.tasks, results)
    summary = _summary(config, prep, fusion, fallback, image_size, time.perf_counter() - start, stats)
    metrics = {"tasks": tasks_metrics, "delta_m": delta_m(tasks_metrics),
               "protocol": _protocol(config, prep, splits),
               "strata": strata_breakdown(prep.tasks, prep.records, predictions),
               "label_counts": label_counts(prep.tasks, prep.records, splits[0]),
               "run": summary, "notes": prep.notes + ([fallback] if fallback else [])}
    check = fit_check(final.model, inputs, final.split, is_features)
    metrics["out_of_distribution"] = {"method": f"mean distance to the {check.k} nearest training cases",
                                      "threshold": check.threshold, "quantile": check.quantile,
                                      "calibrated_on": check.calibrated_on}
    check.save(out / "ood.safetensors")  # before _write_run, whose metrics.json marks a finished run
    _write_run(out, config, prep, fusion, model_cfg, image_size, final, results, predictions, metrics, summary)
    checkpoints.finish()
    return RunResult(out, metrics, console_table(tasks_metrics))


def _protocol(config: RunConfig, prep: Prepared, splits: list[dict[str, Any]]) -> dict[str, Any]:
    e, key = config.evaluation, prep.plugin.stratify_key
    strata = prep.records.strata.get(key) if key else None
    protocol = {"folds": e.folds, "repeats": e.repeats, "trainings": len(splits), "stratified_on": key,
                "group_aware": prep.records.groups is not None, "split_seed": config.data.split.seed,
                "single_task_baselines": e.wants_single_task()}
    if e.folds == 1:
        protocol["test_fraction"] = config.data.split.test_fraction
    small = small_strata(strata, e.folds)
    if small:
        protocol["small_strata"] = (f"strata with fewer cases than folds are spread over as many folds as they have "
                                    f"cases: {small}")
    protocol["ci95"] = "mean over trainings +/- t(0.975, n-1) * std / sqrt(n); folds of one repeat share data"
    return protocol


def _write_run(out: Path, config: RunConfig, prep: Prepared, fusion: BackboneFusion, model_cfg, image_size: int,
               final: Fitted, results: list, predictions: pd.DataFrame, metrics: dict[str, Any],
               summary: dict[str, Any]) -> None:
    atomic_write(out / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    save_weights(out / "model.safetensors", final.model.head_state_dict(), {"format": "mtl-run/1"})
    write_json(out / "model.json", model_schema(config, prep, fusion, model_cfg, image_size, prep.tasks))
    histories = [{"repeat": r.repeat, "fold": r.fold, "train": r.fitted.history.train, "val": r.fitted.history.val,
                  "weights": r.fitted.history.weights, "best_epoch": r.fitted.history.best_epoch} for r in results]
    write_json(out / "history.json", {"trainings": histories, **{k: histories[0][k] for k in
                                                                 ("train", "val", "weights", "best_epoch")}})
    write_json(out / "split.json", [{k: ([prep.records.ids[i] for i in v] if isinstance(v, np.ndarray) else v)
                                     for k, v in r.fitted.split.items()} for r in results])
    write_csv(out / "predictions.csv", predictions)
    report = markdown_report(summary, metrics, [t.describe() for t in prep.tasks])
    atomic_write(out / "report.md", report)
    _write_figures(out, prep, predictions, histories, report, metrics["tasks"])
    write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run


def _write_figures(out: Path, prep: Prepared, predictions: pd.DataFrame, histories: list, report: str,
                   entries: dict[str, Any]) -> None:
    """Figures (of every task, and of every component entry by its own kind) and the self-contained HTML report
    (when the figure modules are available)."""
    components = [{"name": name, "kind": e["kind"], "unit": e.get("unit", "")} for name, e in entries.items()
                  if "part_of" in e]
    figures = write_figures(out, [t.describe() for t in prep.tasks] + components, predictions, histories,
                            CaseImages.from_records(prep.records, prep.plugin.read_image))
    write_html(out, report, figures)
