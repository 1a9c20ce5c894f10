"""Every check of a run before feature extraction, in one place.

``mtl run`` (through :func:`~mtl_core.workflow.run.prepare`) and ``mtl validate`` both call :func:`check_run`, so
that validate refuses exactly what a run would refuse before it extracts anything: the plugin and its options, the
tasks with the config's overrides, the loss strategy, the device, the backbones (names, weights, the fallback
configuration), the model against the tasks, and -- where the data is at hand -- the records, the splits of the
evaluation protocol and whether the features fit in memory. Nothing here reads an image; backbones are built only
for ``mtl validate`` and only when they were never built with the same settings (then remembered).

Example:
    >>> from mtl_core.config import load_config
    >>> checked = check_run(load_config("examples/shapes"))  # doctest: +SKIP
    >>> [t.name for t in checked.tasks]  # doctest: +SKIP
    ['shape', 'count', 'size']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, RunConfig
from ..data import Records, holdout_split, kfold_splits
from ..data.augment import plugin_transforms
from ..errors import ConfigError, DataError, MTLError, PluginError, WeightsError
from ..features import check_features_fit, create_fusion, pretrained_available, recall_fusion
from ..io import build_folder_once, cache_dir, image_limits
from ..model import ARCHITECTURES
from ..plugins import Plugin, load_plugin
from ..registry import suggest
from ..tasks import Task
from ..train import WEIGHTINGS, pick_device

Say = Callable[[str], None]


@dataclass
class CheckedRun:
    """What the checks found: the plugin, its tasks, the model settings a run uses, and the data when it was read.

    ``data_dir`` and ``records`` are None when no data was at hand (``mtl validate`` without a data folder and
    without the plugin's synthetic data in the cache); the checks that need them were then not run.
    """

    plugin: Plugin
    tasks: list[Task]
    model: ModelConfig
    image_size: int
    fallback: str | None
    data_dir: Path | None = None
    records: Records | None = None
    notes: list[str] = field(default_factory=list)


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


def check_device(requested: str) -> None:
    """``train.device`` must name a device this machine has (``auto`` always does)."""
    if requested == "auto":
        return
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"train.device: {requested!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ConfigError(f"train.device is {requested!r} but this machine has {count} CUDA device(s); set "
                          f"train.device to auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"train.device is {requested!r} but MPS is not available here; set train.device to auto "
                          f"or cpu")


def _unknown_backbones(names: list[str]) -> list[str]:
    """A "did you mean" problem per name no library builds. Looking up a name's pretrained weights refuses an
    unknown name (it asks timm and torchvision which one builds it, or finds the answer of an earlier look-up in
    the memo), so that the names of the example need no import of timm."""
    problems = []
    for name in dict.fromkeys(names):
        try:
            pretrained_available(name)
        except MTLError as exc:
            problems.append(str(exc))
    return problems


def check_backbones(config: RunConfig) -> None:
    """Every backbone name of ``model`` and ``fallback`` exists (all unknown names at once, with suggestions)."""
    fallback = (config.fallback.backbones or []) if config.fallback else []
    problems = _unknown_backbones([*config.model.backbones, *fallback])
    if len(problems) > 1:  # the list of available names once, at the end
        problems = [p.partition(" Available:")[0] for p in problems[:-1]] + problems[-1:]
        raise ConfigError("model.backbones: " + "; ".join(problems))
    if problems:
        raise ConfigError(problems[0])


def check_weights(model: ModelConfig) -> None:
    """The weights of the model a run builds, as building it would judge them: unique names, per-backbone weights
    only for its backbones, weights files that exist, and pretrained weights where ``on_missing_weights`` is
    'error' and downloads are off."""
    names = model.backbones
    if len(set(names)) != len(names):
        raise MTLError(f"backbone names must be unique, got {names}")
    weights = model.weights
    if isinstance(weights, dict):
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise MTLError(f"weights given for {unknown[0]!r}, which is not among the backbones "
                           f"({', '.join(names)}); " + suggest(unknown[0], names, "backbone"))
    for name in names:
        asked = weights.get(name, "pretrained") if isinstance(weights, dict) else weights
        if asked not in ("random", "pretrained") and not Path(asked).expanduser().is_file():
            raise WeightsError(f"weights file {Path(asked).expanduser()} does not exist; give the path of a "
                               f".safetensors or .pth file")
        if asked == "pretrained" and model.on_missing_weights == "error" and not model.allow_download \
                and not pretrained_available(name):
            raise WeightsError(f"no pretrained weights for backbone {name!r} in the local caches and downloads are "
                               f"off; put <name>.safetensors in $MTL_WEIGHTS_DIR or give a weights file")


def check_model(config: RunConfig, tasks: list[Task]) -> tuple[ModelConfig, int, str | None]:
    """The fallback decision, the model against the tasks, the backbones and their weights; the model a run uses.

    The cheapest checks come first: the pooling a task needs is known without looking up any weights."""
    try:
        model, image_size, fallback = effective_model(config)  # looks up weights when a fallback may apply
    except MTLError:
        check_backbones(config)  # an unknown name: every unknown name at once
        raise
    check_model_for_tasks(model, tasks)
    check_backbones(config)
    check_weights(model)
    return model, image_size, fallback


def synthetic_dir(plugin: Plugin) -> Path:
    """Where a run keeps the plugin's synthetic data set (one folder per plugin and options)."""
    options = json.dumps(plugin.options.model_dump(mode="json"), sort_keys=True)
    return cache_dir() / "synthetic" / plugin.name / hashlib.sha256(options.encode()).hexdigest()[:12]


def resolve_data_dir(plugin: Plugin, config: RunConfig, data: Path | None, say: Say,
                     synthesize: bool = True) -> tuple[Path | None, list[str]]:
    """--data, else the configured folder if it exists, else the plugin's synthetic data in the cache (generated
    there when ``synthesize``; without it, None when it is not there yet)."""
    if data is not None:
        return Path(data).expanduser(), []
    if config.data.path and Path(config.data.path).expanduser().exists():
        return Path(config.data.path).expanduser(), []
    target = synthetic_dir(plugin)
    if not synthesize and not target.exists():
        return None, []
    # Two runs at once may both find it missing: one builds it (into a temporary folder renamed into place, under
    # a lock), the other waits and then uses the finished folder (io/locks.py).
    made = build_folder_once(target, plugin.synthetic_data, lambda: say(
        f"waiting for another process to finish the synthetic data set of plugin {plugin.name!r} in {target}"))
    if made is None:
        if not synthesize:
            return None, []
        raise DataError("no data folder: give --data PATH or set data.path in the config "
                        f"({config.data.path or 'unset'} does not exist)")
    note = f"no data folder given: using the synthetic data set of plugin {plugin.name!r} in {made}"
    say(note)
    return made, [note]


def check_splits(records: Records, plugin: Plugin, config: RunConfig) -> None:
    """The evaluation protocol fits the data: the held-out split or the K folds can be drawn from its cases (or
    groups). Drawing them costs milliseconds; the run draws the same ones later."""
    key = plugin.stratify_key
    strata = records.strata.get(key) if key else None
    s, e = config.data.split, config.evaluation
    if e.folds == 1:
        holdout_split(len(records), strata, s.test_fraction, s.val_fraction, s.seed, records.groups)
    else:
        kfold_splits(len(records), strata, records.groups, e.folds, e.repeats, s.val_fraction, s.seed)


def check_records(plugin: Plugin, config: RunConfig, data_dir: Path) -> tuple[Records, list[Task]]:
    """Read the records table (no image is opened) and check them against the tasks, which may depend on the data
    (a plugin may learn class lists from it)."""
    records = plugin.load_records(data_dir)
    tasks = build_tasks(plugin, config)
    records.validate(tasks, str(data_dir))
    key = plugin.stratify_key
    if key and key not in records.strata:
        raise PluginError(f"plugin {plugin.name!r} declares stratify_key {key!r} but its records have no such "
                          f"stratum (have: {', '.join(records.strata) or 'none'})")
    check_splits(records, plugin, config)
    return records, tasks


def check_backbones_built(config: RunConfig, model: ModelConfig, image_size: int, records: Records | None,
                          build: bool) -> None:
    """What only the backbones themselves can tell: the feature levels pooling ``map`` keeps, the contents of a
    weights file, a download, and whether the feature matrix of every case fits in memory.

    Frozen backbones built before with these settings are known from their remembered description (no building).
    Otherwise they are built only when ``build`` is set (``mtl validate``; the description is remembered, so that
    the run that follows does not build them again); ``mtl run`` builds them right after these checks anyway.
    """
    seed = config.train.seed
    fusion = create_fusion(model, image_size, seed) if build else recall_fusion(model, image_size, seed)
    if fusion is not None and records is not None:
        check_features_fit(len(records), fusion, pick_device(config.train.device))


def check_run(config: RunConfig, data: Path | None = None, *, say: Say = print, synthesize: bool = False,
              build: bool = False) -> CheckedRun:
    """Every check ``mtl run`` makes before extracting features; the first problem raises an :class:`MTLError`.

    Args:
        config: the validated run config.
        data: a data folder (``--data``); None: the config's ``data.path`` if it exists, else the plugin's
            synthetic data set in the cache.
        say: where notes go (the synthetic data set used).
        synthesize: generate the synthetic data set when it is not in the cache yet (``mtl run``); without it
            (``mtl validate``) the data checks are skipped when there is no data at hand.
        build: build backbones that were never built with these settings, for the checks only they can answer
            (``mtl validate``; a run builds them next, see :func:`check_backbones_built`).
    """
    plugin = load_plugin(config.plugin, config.plugin_options)
    tasks = build_tasks(plugin, config)  # config mistakes about tasks fail before any data is read
    WEIGHTINGS.get(config.loss.strategy)
    ARCHITECTURES.get(config.model.trunk.architecture)  # a typo fails here, not after extraction
    plugin_transforms(config.train.augment, plugin)  # a transform that is not label-safe for the plugin
    check_device(config.train.device)
    image_limits()  # a nonsense MTL_MAX_IMAGE_PIXELS fails here, not only when an uncached image is decoded
    model, image_size, fallback = check_model(config, tasks)
    data_dir, notes = resolve_data_dir(plugin, config, data, say, synthesize)
    records = None
    if data_dir is not None:
        records, tasks = check_records(plugin, config, data_dir)
        check_model_for_tasks(model, tasks)
    check_backbones_built(config, model, image_size, records, build)
    return CheckedRun(plugin, tasks, model, image_size, fallback, data_dir, records, notes)


__all__ = ["CheckedRun", "build_tasks", "check_backbones_built", "check_device", "check_model", "check_model_for_tasks",
           "check_run", "check_splits", "effective_model", "resolve_data_dir", "synthetic_dir"]
