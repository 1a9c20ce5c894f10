"""A complete run: plugin -> records -> split -> features -> training -> evaluation -> run folder."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..accel import extraction_batch, keep_on_device, loader_workers
from ..config import ModelConfig, RunConfig
from ..data import (
    InputCache,
    Records,
    Split,
    TrainingInputs,
    holdout_split,
    kfold_splits,
    load_image_tensor,
    train_val_split,
)
from ..data.augment import Augmenter, create_augmenter, with_augment
from ..distributed import current_parallel
from ..features import BackboneFusion, FeatureCache, LazyFusion, check_features_fit, create_fusion
from ..io import cache_dir
from ..model import MultiTaskModel, create_model
from ..plugins import Plugin
from ..tasks import Task
from ..train import History, LossComposer, Trainer, pick_device
from .checks import Say, check_model_for_tasks, check_run, effective_model

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What a run needs before training: the plugin, its tasks, and the validated records."""

    plugin: Plugin
    tasks: list[Task]
    data_dir: Path
    records: Records
    notes: list[str] = field(default_factory=list)


def prepare(config: RunConfig, data: Path | None = None, say: Say = print) -> Prepared:
    """Every check before extraction (:func:`~mtl_core.workflow.checks.check_run`, the same as ``mtl validate``)
    with the data read: everything a user can get wrong fails here, before any output."""
    checked = check_run(config, data, say=say, synthesize=True)
    assert checked.data_dir is not None and checked.records is not None  # synthesize: data or a DataError
    return Prepared(checked.plugin, checked.tasks, checked.data_dir, checked.records, checked.notes)


def compute_inputs(prep: Prepared, fusion: BackboneFusion | LazyFusion, config: RunConfig, image_size: int,
                   progress: Callable | None) -> TrainingInputs:
    """Cached fused features for frozen backbones, else the resized images."""
    paths = prep.records.paths
    decoded = InputCache(cache_dir() / "inputs", prep.plugin.reader_id()) if config.data.cache_inputs else None
    if fusion.frozen:
        log.info("feature cache: %s", cache_dir() / "features")
        cache = FeatureCache(cache_dir() / "features")
        device = pick_device(config.train.device)
        check_features_fit(len(paths), fusion, device)  # feature maps can outgrow the memory: say so before
        options = {"reader_id": prep.plugin.reader_id(), "batch_size": extraction_batch(config.data.batch_size, device),
                   "workers": loader_workers(config.data.workers, device), "device": device, "input_cache": decoded,
                   **config.compute.model_dump()}
        par, own = current_parallel(), FeatureCache(cache.root)
        if par.active:  # torchrun: each process extracts its shard into the shared cache; rank 0 then reads them all
            own.features(fusion, par.shard(paths), prep.plugin.read_image, image_size, progress=progress, **options)
            par.wait()
            if not par.main:
                return TrainingInputs(torch.empty(0), True)
        feats = cache.features(fusion, paths, prep.plugin.read_image, image_size, progress=progress, **options)
        stats = {"cache_hits": cache.hits - own.misses, "cache_misses": cache.misses + own.misses}
        return TrainingInputs(keep_on_device(feats, device), True, stats | ({"processes": par.world} if par.active
                                                                            else {}))
    read = decoded.image if decoded is not None else load_image_tensor
    images = torch.stack([read(p, prep.plugin.read_image, image_size) for p in paths])
    return TrainingInputs(images, False)


@dataclass(frozen=True, eq=False)  # holds tensors and models: compared by identity
class RunContext:
    """What a run has decided before its first training: every training of the run reads it.

    Attributes:
        config: the run configuration.
        prep: the plugin, its tasks and the validated records.
        model_cfg: the model settings actually used (the fallback's when it replaced the configured ones).
        image_size: the image side actually used.
        fallback: why the fallback configuration replaced the configured model, or None.
        fusion: the backbones (frozen ones built before come back as a :class:`LazyFusion`).
        inputs: the cached features or images of every case.
        progress: optional tqdm-like factory for progress bars.
        augment: what augments the training images when backbones are trained (``train.augment``), or None.
    """

    config: RunConfig
    prep: Prepared
    model_cfg: ModelConfig
    image_size: int
    fallback: str | None
    fusion: BackboneFusion | LazyFusion
    inputs: TrainingInputs
    progress: Callable | None = None
    augment: Augmenter | None = None

    @property
    def tasks(self) -> list[Task]:
        """Every task of the run."""
        return self.prep.tasks

    @property
    def records(self) -> Records:
        """Every case of the run."""
        return self.prep.records


def decide_run(config: RunConfig, prep: Prepared, say: Say = print, progress: Callable | None = None) -> RunContext:
    """The model actually used (fallback included), its backbones and the inputs of every case, saying what the
    user should know (a fallback, random weights, where the caches are)."""
    model_cfg, image_size, fallback = effective_model(config)
    check_model_for_tasks(model_cfg, prep.tasks)
    if fallback:
        say(f"NOTE: {fallback}")
    augment = create_augmenter(config.train.augment, prep.plugin, prep.tasks)  # a transform not label-safe: before
    fusion = create_fusion(model_cfg, image_size, config.train.seed)
    if fusion.uses_random_weights:
        say("WARNING: backbones use RANDOM INITIALISATION (no pretrained weights); this is recorded in the outputs")
    say(f"caches: {cache_dir()} (set MTL_CACHE_DIR to move them)")
    inputs = compute_inputs(prep, fusion, config, image_size, progress)
    return RunContext(config, prep, model_cfg, image_size, fallback, fusion, inputs, progress, augment)


@dataclass(frozen=True, eq=False)  # holds tensors and models: compared by identity
class Fitted:
    """A trained model with its split and history."""

    model: MultiTaskModel
    history: History
    split: Split
    outputs: dict[str, torch.Tensor]  # raw head outputs on the test part
    val_outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # on the validation part: thresholds


def train_and_predict(ctx: RunContext, tasks: list[Task], split: Split, strategy: str | None = None,
                      checkpoint: Path | None = None) -> Fitted:
    """Fit ``tasks``' normalisation on the training part, train (continuing from ``checkpoint`` when it exists),
    and predict the test part. ``strategy`` overrides the configured loss weighting."""
    inputs, config = ctx.inputs, ctx.config
    fusion = ctx.fusion if inputs.is_features else copy.deepcopy(ctx.fusion)  # trained backbones: same start
    train_rec = ctx.records.subset(split.train)
    for task in tasks:
        task.fit(np.asarray(train_rec.targets[task.name], np.float64))
    torch.manual_seed(config.train.seed)
    model = create_model(fusion, tasks, ctx.model_cfg.trunk.model_dump(), ctx.model_cfg.share_heatmap,
                         attach=not inputs.is_features)
    if inputs.is_features and ctx.model_cfg.standardize_features:
        model.fit_feature_norm(inputs.tensor, rows=split.train)
    trainer = Trainer(model, LossComposer(tasks, strategy or config.loss.strategy), config.train,
                      None if inputs.is_features else current_parallel())  # features: rank 0 trains alone
    train = with_augment(inputs.part(ctx.records, tasks, split.train), None if inputs.is_features else ctx.augment)
    history = trainer.fit(train, inputs.part(ctx.records, tasks, split.val), progress=ctx.progress,
                          checkpoint=checkpoint)
    outputs = trainer.predict(inputs.part(ctx.records, tasks, split.test))
    val_outputs = trainer.predict(inputs.part(ctx.records, tasks, split.val)) if len(split.val) else {}
    model.fusion = fusion
    return Fitted(model, history, split, outputs, val_outputs)


def _strata(records: Records, plugin: Plugin) -> np.ndarray | None:
    key = plugin.stratify_key
    return records.strata.get(key) if key else None


def make_splits(records: Records, plugin: Plugin, config: RunConfig) -> list[Split]:
    """One held-out split, or repeated stratified (group-aware when the records have groups) K-fold splits."""
    strata = _strata(records, plugin)
    s, e = config.data.split, config.evaluation
    if e.folds == 1:
        return [holdout_split(len(records), strata, s.test_fraction, s.val_fraction, s.seed, records.groups)]
    return kfold_splits(len(records), strata, records.groups, e.folds, e.repeats, s.val_fraction, s.seed)


def final_split(records: Records, plugin: Plugin, config: RunConfig) -> Split:
    """All cases but a validation part (for early stopping): the model a cross-validated run saves."""
    train, val = train_val_split(len(records), _strata(records, plugin), config.data.split.val_fraction,
                                 config.data.split.seed, records.groups)
    return Split(train, val, np.array([], dtype=int), repeat=-1, fold=-1)


def label_counts(tasks: list[Task], records: Records, split: Split) -> dict[str, dict[str, int]]:
    """Number of labelled cases per task in each part."""
    return {t.name: {part: int(t.labelled(records.targets[t.name][idx]).sum()) for part, idx in split.parts().items()}
            for t in tasks}
