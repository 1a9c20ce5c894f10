"""``mtl run``: a whole run from config to run folder."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..config import RunConfig
from ..data import Split, small_strata
from ..distributed import Parallel, current_parallel, session
from ..errors import MTLError
from ..evaluate import fit_check
from ..features import BackboneFusion, library_versions
from ..io import atomic_write, claim_output, write_csv, write_json, write_run_model
from ..plugins import plugin_version
from ..report import CaseImages, console_table, markdown_report, write_figures, write_html
from ..train import RunCheckpoints, open_run_checkpoints, reading_checkpoints, training_key
from .crossval import FoldResult, aggregate, delta_m, run_folds, strata_breakdown
from .explaining import report_overlays
from .run import (
    Fitted,
    RunContext,
    Say,
    decide_run,
    final_split,
    label_counts,
    make_splits,
    prepare,
    train_and_predict,
)

log = logging.getLogger(__name__)

#: the writer ``mtl run`` records in the marker of its run folders (io/output_folder.py)
RUN_WRITER = "mtl run"


@dataclass
class RunResult:
    """Where a run wrote its files and what it measured."""

    output: Path
    metrics: dict[str, Any]
    table: str
    predictions: pd.DataFrame | None = None  # the held-out predictions (as predictions.csv, before escaping)


@dataclass(frozen=True, eq=False)  # holds tensors and models: compared by identity
class Trained:
    """Every training of a run: the evaluated folds, their decoded test predictions and the model the run saves."""

    splits: list[Split]
    results: list[FoldResult]
    predictions: pd.DataFrame
    final: Fitted


def weights_used(fusion: BackboneFusion, model_cfg) -> dict[str, str]:
    """Per backbone, what was actually loaded: "random" when pretrained weights could not be had."""
    asked = model_cfg.weights
    return {i.name: "random" if i.weights == "random" else (asked.get(i.name, "pretrained")
                                                             if isinstance(asked, dict) else asked)
            for i in fusion.infos}


def model_schema(ctx: RunContext) -> dict[str, Any]:
    """Everything ``mtl predict`` needs to rebuild the model, as JSON (the run-folder format is added by
    :func:`~mtl_core.io.write_run_model`)."""
    config, fusion = ctx.config, ctx.fusion
    return {
        "plugin": config.plugin,
        "plugin_options": config.plugin_options,
        "image_size": ctx.image_size,
        "seed": config.train.seed,
        "model": ctx.model_cfg.model_dump() | {"weights": weights_used(fusion, ctx.model_cfg)},
        "backbones": fusion.describe(),
        "backbone_checksum": fusion.checksum(),
        "tasks": [t.describe() for t in ctx.tasks],
    }


def _summary(ctx: RunContext, wall: float) -> dict[str, Any]:
    config, fusion = ctx.config, ctx.fusion
    return {
        "plugin": f"{config.plugin} {plugin_version(ctx.prep.plugin)}",
        "data": str(ctx.prep.data_dir),
        "cases": len(ctx.records),
        "backbones": ", ".join(f"{i.name} ({i.weights})" for i in fusion.infos),
        "weights": "RANDOM INITIALISATION" if fusion.uses_random_weights else "pretrained",
        "fallback": ctx.fallback or "none",
        "pooling": _pooling(fusion),
        "weights_ids": {i.name: i.weights_id for i in fusion.infos},
        "backbones_frozen": fusion.frozen,
        "image_size": ctx.image_size,
        "share_heatmap": config.model.share_heatmap,
        "loss_weighting": config.loss.strategy,
        "seed": config.train.seed,
        "feature_cache": ctx.inputs.cache_stats or "not used",
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
            progress: Callable | None = None, resume: bool = False, overwrite: bool = False) -> RunResult:
    """Run everything and write the run folder. Bad input fails before anything is written.

    The run folder is claimed first (:func:`~mtl_core.io.claim_output`): new, empty or a run folder of ``mtl run``
    (else ``overwrite``), held by this run alone, its finished mark and earlier results removed unless ``resume``.
    Every training is checkpointed after each epoch in ``OUTPUT/checkpoints/``; ``resume`` continues an
    interrupted run from there (features come back from the cache), ending exactly as an uninterrupted run.
    """
    start = time.perf_counter()
    with session(config.train.device) as par:  # under torchrun: one process of a distributed run
        prep = prepare(config, data, say if par.main else _quiet)
        out = Path(output or config.output)
        if not par.main:
            return _follow(config, prep, out, par)
        with claim_output(out, RUN_WRITER, overwrite=overwrite, resume=resume):
            return _execute(config, prep, out, say, progress, resume, start)


def _quiet(message: str) -> None:
    """The console of a process other than rank 0: rank 0 says it."""


def _follow(config: RunConfig, prep, out: Path, par: Parallel) -> RunResult:
    """A process other than rank 0: extract its shard of the features (frozen backbones) or train its share of
    every batch (trained backbones); rank 0 writes the run folder, checkpoints included (docs/distributed.md)."""
    par.wait()  # rank 0 has claimed the run folder and opened its checkpoints
    ctx = decide_run(config, prep, _quiet)
    if not ctx.inputs.is_features:
        train_all(ctx, reading_checkpoints(out), _quiet)
    par.wait()  # until rank 0 has written the run folder
    return RunResult(out, {}, "")


def _execute(config: RunConfig, prep, out: Path, say: Say, progress: Callable | None, resume: bool,
             start: float) -> RunResult:
    checkpoints = open_run_checkpoints(out, config, prep.records, resume=resume, say=say)
    current_parallel().wait()  # the other processes of a distributed run may read the checkpoints now
    ctx = decide_run(config, prep, say, progress)
    trained = train_all(ctx, checkpoints, say)
    metrics = run_metrics(ctx, trained, time.perf_counter() - start)
    check = fit_check(trained.final.model, ctx.inputs, trained.final.split)
    metrics["out_of_distribution"] = {"method": f"mean distance to the {check.k} nearest training cases",
                                      "threshold": check.threshold, "quantile": check.quantile,
                                      "calibrated_on": check.calibrated_on}
    check.save(out / "ood.safetensors")  # before _write_run, whose metrics.json marks a finished run
    _write_run(ctx, out, trained, metrics)
    checkpoints.finish()
    current_parallel().wait()  # the other processes of a distributed run end with rank 0
    return RunResult(out, metrics, console_table(metrics["tasks"]), trained.predictions)


def train_all(ctx: RunContext, checkpoints: RunCheckpoints, say: Say) -> Trained:
    """Every training of the run (each checkpointed): the folds, their single-task baselines when asked for, and
    the final model of a cross-validated run (trained on every case but a validation part)."""
    prep = ctx.prep

    def train(tasks: list, split: Split) -> Fitted:
        return train_and_predict(ctx, tasks, split, checkpoint=checkpoints.path(training_key(split, tasks,
                                                                                              prep.tasks)))

    splits = make_splits(prep.records, prep.plugin, ctx.config)
    evaluation = ctx.config.evaluation
    results = run_folds(prep.tasks, prep.records, splits, train, evaluation.wants_single_task(), say,
                        evaluation.threshold)
    final = results[0].fitted if len(results) == 1 else train(prep.tasks, final_split(prep.records, prep.plugin,
                                                                                      ctx.config))
    predictions = pd.concat([r.predictions for r in results], ignore_index=True)
    return Trained(splits, results, predictions, final)


def run_metrics(ctx: RunContext, trained: Trained, wall: float) -> dict[str, Any]:
    """``metrics.json`` but the out-of-distribution check: per-task metrics over folds, Delta_m, the protocol,
    per-stratum breakdowns, label counts, the run summary and notes."""
    prep = ctx.prep
    tasks_metrics = aggregate(prep.tasks, trained.results)
    return {"tasks": tasks_metrics, "delta_m": delta_m(tasks_metrics),
            "protocol": _protocol(ctx, trained.splits),
            "strata": strata_breakdown(prep.tasks, prep.records, trained.predictions),
            "label_counts": label_counts(prep.tasks, prep.records, trained.splits[0]),
            "run": _summary(ctx, wall), "notes": prep.notes + ([ctx.fallback] if ctx.fallback else [])}


def _protocol(ctx: RunContext, splits: list[Split]) -> dict[str, Any]:
    config, prep = ctx.config, ctx.prep
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


def _write_run(ctx: RunContext, out: Path, trained: Trained, metrics: dict[str, Any]) -> None:
    prep = ctx.prep
    atomic_write(out / "config.yaml", yaml.safe_dump(ctx.config.model_dump(mode="json"), sort_keys=False))
    write_run_model(out, model_schema(ctx), _saved_state(ctx, trained.final.model.head_state_dict()))
    histories = [{"repeat": r.repeat, "fold": r.fold} | r.fitted.history.to_json() for r in trained.results]
    write_json(out / "history.json", {"trainings": histories, **{k: histories[0][k] for k in
                                                                 ("train", "val", "weights", "best_epoch")}})
    write_json(out / "split.json", [r.fitted.split.to_json(prep.records.ids) for r in trained.results])
    write_csv(out / "predictions.csv", trained.predictions)
    write_report(out, prep.tasks, metrics, trained.predictions, histories,
                 CaseImages.from_records(prep.records, prep.plugin.read_image),
                 saliency=ctx.config.evaluation.saliency_images)
    write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run


def _saved_state(ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
    """The tensors of ``model.safetensors``: with the backbones' too when one was loaded from a weights file, which
    ``mtl predict`` never reads (it reads a run's weights only from its run folder)."""
    files = [w for w in weights_used(ctx.fusion, ctx.model_cfg).values() if w not in ("pretrained", "random")]
    if not files or any(k.startswith("fusion.") for k in state):
        return state
    return state | {f"fusion.{k}": v for k, v in ctx.fusion.built().state_dict().items()}


def write_report(out: Path, tasks: list, metrics: dict[str, Any], predictions: pd.DataFrame, histories: list,
                 images: CaseImages | None = None, saliency: int = 0) -> None:
    """``report.md``, the figures (of every task, and of every component entry by its own kind) and the
    self-contained ``report.html`` (when the figure modules are available) of a run folder, with the saliency
    overlays of ``saliency`` held-out images per task (the model files must be written already)."""
    report = markdown_report(metrics["run"], metrics, [t.describe() for t in tasks])
    atomic_write(out / "report.md", report)
    components = [{"name": name, "kind": e["kind"], "unit": e.get("unit", "")} for name, e in metrics["tasks"].items()
                  if "part_of" in e]
    figures = write_figures(out, [t.describe() for t in tasks] + components, predictions, histories, images)
    write_html(out, report, figures, _overlays(out, predictions, images, saliency))


def _overlays(out: Path, predictions: pd.DataFrame, images: CaseImages | None, count: int) -> dict:
    """report.html's saliency overlays; a run whose backbones name no feature map gets none (logged), not a
    failed run."""
    if not count or images is None:
        return {}
    try:
        return report_overlays(out, predictions, images.paths, count)
    except MTLError as exc:
        log.warning("no saliency overlays in report.html: %s", exc)
        return {}
