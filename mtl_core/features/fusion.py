"""Frozen backbones known from an earlier run: described without being built, built on first use.

A run whose features are all in the feature cache needs its backbones only for their description (part of the
cache key and of the run's records) and for the checksum of their weights (``model.json``). Both are remembered
(:mod:`mtl_core.features.memo`) the first time the fusion is built, keyed by everything that decides them: the names,
each
backbone's weights (random with its seed, or the file with its size and modification time), pooling, grid (map
size and levels for pooling ``map``), image size and library versions. The next run gets a :class:`LazyFusion`,
which builds the real :class:`~mtl_core.features.backbones.BackboneFusion` only when images must go through it (cache
misses, a forward call).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..errors import RunError
from ..io import cache_dir
from .backbones import BackboneFusion, BackboneInfo
from .memo import recall, remember
from .weights import local_weights_file, pretrained_file


def _weights_part(name: str, asked: str, seed: int, model: ModelConfig) -> tuple[list, Path | None] | None:
    """How ``name``'s weights resolve, without building it; None when only building can tell (a download, an
    error to raise)."""
    if asked == "random":
        return [name, "random", seed], None
    if asked != "pretrained":
        file, kind = Path(asked).expanduser(), "file"
    else:
        file, kind = local_weights_file(name) or pretrained_file(name), "pretrained"
        if file is None:
            if model.allow_download or model.on_missing_weights == "error":
                return None
            return [name, "missing", seed], None  # random initialisation, as the build would do
    if not file.is_file():
        return None
    return [name, kind, str(file.resolve())], file


def _map_settings(pooling: str, map_size: int, map_levels: int) -> dict[str, int]:
    """The map settings with pooling ``map``, else nothing (records of avg and grid fusions keep their keys)."""
    return {"map_size": map_size, "map_levels": map_levels} if pooling == "map" else {}


def fusion_key(model: ModelConfig, image_size: int, seed: int) -> tuple[dict[str, Any], list[Path]] | None:
    """Everything that decides a frozen fusion's description and weights, and the weights files it reads; None
    when that cannot be known without building it."""
    names, weights = model.backbones, model.weights
    if len(set(names)) != len(names) or (isinstance(weights, dict) and set(weights) - set(names)):
        return None  # building reports the mistake
    parts, files = [], []
    for i, name in enumerate(names):
        asked = weights.get(name, "pretrained") if isinstance(weights, dict) else weights
        part = _weights_part(name, asked, seed + i, model)
        if part is None:
            return None
        parts.append(part[0])
        files += [part[1]] if part[1] is not None else []
    key = {"backbones": parts, "pooling": model.pooling, "grid": model.grid, "image_size": image_size}
    return key | _map_settings(model.pooling, model.map_size, model.map_levels), files


class LazyFusion:
    """A frozen fusion from its remembered description; :meth:`built` builds (once) the real fusion.

    It answers what a run asks of a frozen fusion (``infos``, ``num_features``, ``map_shape``, ``feature_dtype``,
    ``describe()``, ``checksum()``, ``pooling``, ``grid``, ``map_size``, ``map_levels``) without building anything,
    and runs images through the built fusion when called.
    """

    frozen = True

    def __init__(self, card: dict[str, Any], build: Callable[[], BackboneFusion]) -> None:
        self.infos = [BackboneInfo(**(info | {k: tuple(v) for k, v in info.items() if isinstance(v, list)}))
                      for info in card["backbones"]]  # JSON lists back to tuples (mean, std, map_channels)
        self.pooling, self.grid, self._checksum = card["pooling"], card["grid"], card["checksum"]
        self.map_size, self.map_levels = card.get("map_size"), card.get("map_levels")
        self._build, self._fusion = build, None

    # BackboneFusion's own definitions: they read nothing but ``infos``
    num_features = BackboneFusion.num_features
    map_shape = BackboneFusion.map_shape
    feature_dtype = BackboneFusion.feature_dtype
    uses_random_weights = BackboneFusion.uses_random_weights
    describe = BackboneFusion.describe

    def checksum(self) -> str:
        """SHA-256 of the backbones' tensors, as :meth:`BackboneFusion.checksum`."""
        return self._checksum

    def built(self) -> BackboneFusion:
        """The real fusion, built on first use and checked against what was remembered of it."""
        if self._fusion is None:
            fusion = self._build()
            if fusion.describe() != self.describe() or fusion.checksum() != self._checksum:
                raise RunError(f"the backbones built differ from what {cache_dir() / 'memo'} remembers of them; "
                               f"delete that folder and run again")
            self._fusion = fusion
        return self._fusion

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 1|3, H, W) in [0, 1] -> fused features (B, num_features)."""
        return self.built()(images)


def build_fusion(model: ModelConfig, image_size: int, seed: int) -> BackboneFusion:
    """The backbones of a model config, built now (training end to end, predicting on new images)."""
    return BackboneFusion(model.backbones, weights=model.weights, pooling=model.pooling, grid=model.grid,
                          map_size=model.map_size, map_levels=model.map_levels, image_size=image_size,
                          frozen=model.frozen, allow_download=model.allow_download,
                          on_missing_weights=model.on_missing_weights, seed=seed,
                          trainable_stages=model.trainable_stages)


def _builder(model: ModelConfig, image_size: int, seed: int) -> Callable[[], BackboneFusion]:
    return partial(build_fusion, model, image_size, seed)


def _recalled(key: dict[str, Any], build: Callable[[], BackboneFusion]) -> LazyFusion | None:
    card = recall("fusion", key)
    if card is None:
        return None
    try:
        return LazyFusion(card, build)
    except (KeyError, TypeError, AttributeError):  # a record of another shape: build and remember again
        return None


def recall_fusion(model: ModelConfig, image_size: int, seed: int) -> LazyFusion | None:
    """The frozen fusion of a model config as remembered from an earlier build, without building anything (what
    ``mtl validate`` needs to know its feature width); None when it was never built with these settings."""
    found = fusion_key(model, image_size, seed) if model.frozen else None
    return None if found is None else _recalled(found[0], _builder(model, image_size, seed))


def create_fusion(model: ModelConfig, image_size: int, seed: int) -> BackboneFusion | LazyFusion:
    """The backbones of a model config: a :class:`LazyFusion` when frozen backbones with these settings were
    built before (and nothing they depend on changed), else a freshly built :class:`BackboneFusion`."""
    build = _builder(model, image_size, seed)
    found = fusion_key(model, image_size, seed) if model.frozen else None
    if found is None:
        return build()
    remembered = _recalled(found[0], build)
    if remembered is not None:
        return remembered
    fusion = build()
    record = {"backbones": fusion.describe(), "pooling": fusion.pooling, "grid": fusion.grid,
              "checksum": fusion.checksum()} | _map_settings(fusion.pooling, fusion.map_size, fusion.map_levels)
    remember("fusion", found[0], record, found[1])
    return fusion


__all__ = ["LazyFusion", "build_fusion", "create_fusion", "fusion_key", "recall_fusion"]
