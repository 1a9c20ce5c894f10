"""A complete run: plugin -> records -> split -> features -> training -> evaluation -> run folder."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..accel import extraction_batch, keep_on_device, loader_workers
from ..config import ModelConfig, RunConfig
from ..data import InputCache, Records, TensorData, holdout_split, kfold_splits, load_image_tensor, train_val_split
from ..errors import ConfigError, DataError, PluginError
from ..features import BackboneFusion, FeatureCache, LazyFusion, check_features_fit, create_fusion, pretrained_available
from ..io import cache_dir
from ..model import MultiTaskModel, create_model
from ..plugins import Plugin, load_plugin
from ..registry import suggest
from ..tasks import Task
from ..train import WEIGHTINGS, History, LossComposer, Trainer, TrainSettings, pick_device

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def build_tasks(plugin: Plugin, config: RunConfig) -> list[Task]:
    """The plugin's tasks with the config's per-task overrides (weight, label smoothing, enabled)."""
    tasks = plugin.tasks()
    names = [t.name for t in tasks]
    for name in config.tasks:
        if name not in names:
            raise ConfigError(f"tasks: {suggest(name, names, 'task')}")
    kept = []
    for task in tasks:
        override = config.tasks.get(task.name)
        if override is None:
            kept.append(task)
            continue
        if not override.enabled:
            continue
        if override.weight is not None:
            task.weight = override.weight
        if override.label_smoothing is not None:
            if not hasattr(task, "label_smoothing"):
                raise ConfigError(f"tasks.{task.name}.label_smoothing: task {task.name!r} is a {task.kind} task, "
                                  f"which has no label smoothing (classification tasks have)")
            task.label_smoothing = override.label_smoothing  # type: ignore[attr-defined]
        kept.append(task)
    return kept


@dataclass
class Prepared:
    """What a run needs before training: the plugin, its tasks, and the validated records."""

    plugin: Plugin
    tasks: list[Task]
    data_dir: Path
    records: Records
    notes: list[str] = field(default_factory=list)


def resolve_data_dir(plugin: Plugin, config: RunConfig, data: Path | None, say: Say) -> tuple[Path, list[str]]:
    """--data, else the configured folder if it exists, else the plugin's synthetic data in the cache."""
    if data is not None:
        return Path(data).expanduser(), []
    if config.data.path and Path(config.data.path).expanduser().exists():
        return Path(config.data.path).expanduser(), []
    options = json.dumps(plugin.options.model_dump(mode="json"), sort_keys=True)
    target = cache_dir() / "synthetic" / plugin.name / hashlib.sha256(options.encode()).hexdigest()[:12]
    made = plugin.synthetic_data(target)
    if made is None:
        raise DataError("no data folder: give --data PATH or set data.path in the config "
                        f"({config.data.path or 'unset'} does not exist)")
    note = f"no data folder given: using the synthetic data set of plugin {plugin.name!r} in {made}"
    say(note)
    return made, [note]


def prepare(config: RunConfig, data: Path | None = None, say: Say = print) -> Prepared:
    """Load the plugin, its tasks and the data; everything a user can get wrong fails here, before any output."""
    plugin = load_plugin(config.plugin, config.plugin_options)
    build_tasks(plugin, config)  # config mistakes about tasks fail before any data is read
    WEIGHTINGS.get(config.loss.strategy)  # an unknown strategy fails now, not after feature extraction
    data_dir, notes = resolve_data_dir(plugin, config, data, say)
    records = plugin.load_records(data_dir)
    tasks = build_tasks(plugin, config)  # again: a plugin may learn class lists from the data it read
    records.validate(tasks, str(data_dir))
    key = plugin.stratify_key
    if key and key not in records.strata:
        raise PluginError(f"plugin {plugin.name!r} declares stratify_key {key!r} but its records have no such "
                          f"stratum (have: {', '.join(records.strata) or 'none'})")
    return Prepared(plugin, tasks, data_dir, records, notes)


def effective_model(config: RunConfig) -> tuple[ModelConfig, int, str | None]:
    """The model settings actually used, the image size, and why a fallback replaced them (or None)."""
    model, size = config.model, config.data.image_size
    fb = config.fallback
    wants_pretrained = (model.weights == "pretrained" and not model.allow_download
                        and model.on_missing_weights != "error")  # 'error' means: fail rather than fall back
    if fb is None or not wants_pretrained or all(pretrained_available(n) for n in model.backbones):
        return model, size, None
    missing = [n for n in model.backbones if not pretrained_available(n)]
    update: dict[str, Any] = {k: v for k, v in {"backbones": fb.backbones, "pooling": fb.pooling, "grid": fb.grid,
                                                "map_size": fb.map_size, "map_levels": fb.map_levels,
                                                "trunk": fb.trunk}.items() if v is not None}
    # Random initialisation only for fallback backbones that have no weights anywhere either.
    fallback_backbones = update.get("backbones", model.backbones)
    update["weights"] = {n: "pretrained" if pretrained_available(n) else "random" for n in fallback_backbones}
    reason = (f"no pretrained weights for {', '.join(missing)}: using the fallback configuration "
              f"({fb.reason or 'see the config'})")
    return model.model_copy(update=update), fb.image_size or size, reason


def check_model_for_tasks(model: ModelConfig, tasks: list[Task]) -> None:
    """A task that reads feature maps needs ``pooling: map``: say so before anything is extracted."""
    spatial = [t.name for t in tasks if t.spatial]
    if spatial and model.pooling != "map":
        raise ConfigError(f"task {spatial[0]!r} reads feature maps but model.pooling is {model.pooling!r}; set "
                          f"model.pooling to 'map' (or disable the task)")


def build_fusion(model: ModelConfig, image_size: int, seed: int) -> BackboneFusion | LazyFusion:
    """Backbones of a model config (frozen ones built before come back as a :class:`LazyFusion`)."""
    return create_fusion(model, image_size, seed)


def compute_inputs(prep: Prepared, fusion: BackboneFusion | LazyFusion, config: RunConfig, image_size: int,
                   progress: Callable | None) -> tuple[torch.Tensor, bool, dict[str, int]]:
    """Cached fused features for frozen backbones, else the resized images. Returns (inputs, is_features, stats)."""
    paths = prep.records.paths
    decoded = InputCache(cache_dir() / "inputs", prep.plugin.reader_id()) if config.data.cache_inputs else None
    if fusion.frozen:
        log.info("feature cache: %s", cache_dir() / "features")
        cache = FeatureCache(cache_dir() / "features")
        device = pick_device(config.train.device)
        check_features_fit(len(paths), fusion, device)  # feature maps can outgrow the memory: say so before
        feats = cache.features(fusion, paths, prep.plugin.read_image, image_size, reader_id=prep.plugin.reader_id(),
                               batch_size=extraction_batch(config.data.batch_size, device),
                               workers=loader_workers(config.data.workers, device), device=device,
                               progress=progress, input_cache=decoded, **config.compute.model_dump())
        return keep_on_device(feats, device), True, {"cache_hits": cache.hits, "cache_misses": cache.misses}
    read = decoded.image if decoded is not None else load_image_tensor
    images = torch.stack([read(p, prep.plugin.read_image, image_size) for p in paths])
    return images, False, {}


@dataclass
class Fitted:
    """A trained model with its split and history."""

    model: MultiTaskModel
    history: History
    split: dict[str, np.ndarray]
    outputs: dict[str, torch.Tensor]  # raw head outputs on the test part


def train_and_predict(tasks: list[Task], records: Records, inputs: torch.Tensor, is_features: bool,
                      fusion: BackboneFusion | LazyFusion, model_cfg: ModelConfig, config: RunConfig,
                      split: dict[str, np.ndarray], strategy: str | None = None,
                      progress: Callable | None = None, checkpoint: Path | None = None) -> Fitted:
    """Fit tasks' normalisation on the training part, train (continuing from ``checkpoint`` when it exists), and
    predict the test part."""
    if not is_features:  # trained backbones: every training starts from the same weights
        fusion = copy.deepcopy(fusion)
    train_rec = records.subset(split["train"])
    for task in tasks:
        task.fit(np.asarray(train_rec.targets[task.name], np.float64))

    def part(name: str) -> TensorData:
        return TensorData.build(inputs, records.subset(split[name]), tasks, is_features, rows=split[name])

    torch.manual_seed(config.train.seed)
    model = create_model(fusion, tasks, model_cfg.trunk.model_dump(), model_cfg.share_heatmap, attach=not is_features)
    if is_features and model_cfg.standardize_features:
        model.fit_feature_norm(inputs, rows=split["train"])
    composer = LossComposer(tasks, strategy or config.loss.strategy)
    trainer = Trainer(model, composer, TrainSettings(**config.train.model_dump()))
    history = trainer.fit(part("train"), part("val"), progress=progress, checkpoint=checkpoint)
    outputs = trainer.predict(part("test"))
    model.fusion = fusion
    return Fitted(model, history, split, outputs)


def make_splits(records: Records, plugin: Plugin, config: RunConfig) -> list[dict[str, Any]]:
    """One held-out split, or repeated stratified (group-aware when the records have groups) K-fold splits."""
    key = plugin.stratify_key
    strata = records.strata.get(key) if key else None
    s, e = config.data.split, config.evaluation
    if e.folds == 1:
        train, val, test = holdout_split(len(records), strata, s.test_fraction, s.val_fraction, s.seed,
                                         records.groups)
        return [{"train": train, "val": val, "test": test, "repeat": 0, "fold": 0}]
    return kfold_splits(len(records), strata, records.groups, e.folds, e.repeats, s.val_fraction, s.seed)


def final_split(records: Records, plugin: Plugin, config: RunConfig) -> dict[str, Any]:
    """All cases but a validation part (for early stopping): the model a cross-validated run saves."""
    key = plugin.stratify_key
    strata = records.strata.get(key) if key else None
    train, val = train_val_split(len(records), strata, config.data.split.val_fraction, config.data.split.seed,
                                 records.groups)
    return {"train": train, "val": val, "test": np.array([], dtype=int), "repeat": -1, "fold": -1}


def label_counts(tasks: list[Task], records: Records, split: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Number of labelled cases per task in each part."""
    parts = {k: v for k, v in split.items() if k in ("train", "val", "test")}
    return {t.name: {part: int(t.labelled(records.targets[t.name][idx]).sum()) for part, idx in parts.items()}
            for t in tasks}
