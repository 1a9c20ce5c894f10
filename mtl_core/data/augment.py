"""On-the-fly augmentation of training images with MONAI dictionary transforms; point targets move with the image.

Images are decoded and resized once (held in memory, or read from the input cache); every training batch is then
augmented afresh, one image at a time, by a MONAI :class:`~monai.transforms.Compose` of dictionary transforms:
``RandFlipd`` (``flip_lr``, ``flip_ud``), one ``RandAffined`` (``rotate``, ``scale``, ``translate``, resampled
once), ``RandScaleIntensityd`` (``intensity``), ``RandAdjustContrastd`` (``contrast``) and ``RandGaussianNoised``
(``noise``). Point targets go through the same spatial transforms: ``ApplyTransformToPointsd`` maps them with the
affine the flips and the affine recorded in the image's ``MetaTensor``, the way MONAI keeps images and their
annotations together. A case whose point would leave the image is left unaugmented (its label would be wrong).

Only transforms the plugin declares label-safe are used (:attr:`~mtl_core.plugins.Plugin.label_safe_transforms`):
a left/right flip changes a "left lung" label, a zoom changes a size in pixels.

Randomness: each batch seeds the transforms from the training's shuffling generator, whose state a checkpoint
holds, so a resumed training augments exactly as an uninterrupted one.

Example:
    >>> augment = Augmenter(AugmentConfig(enabled=True), ("rotate", "noise"), point_tasks=["nodule"])
    >>> batch = augment(batch, torch.Generator().manual_seed(0))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import AUGMENTATIONS, AugmentConfig
from ..errors import ConfigError, PluginError
from .records import TensorData

#: What a plugin that declares nothing allows: no flips (they change sides), no zoom (it changes sizes).
SAFE_BY_DEFAULT = ("rotate", "translate", "intensity", "contrast", "noise")
_SPATIAL = ("flip_lr", "flip_ud", "rotate", "scale", "translate")


def chosen_transforms(settings: AugmentConfig, label_safe: Iterable[str], plugin: str) -> tuple[str, ...]:
    """The transforms a run uses: those asked for (all label-safe ones when none are named), in a fixed order.

    Raises:
        PluginError: the plugin declares an unknown transform.
        ConfigError: a transform asked for is not label-safe for the plugin.
    """
    safe = tuple(label_safe)
    unknown = [name for name in safe if name not in AUGMENTATIONS]
    if unknown:
        raise PluginError(f"plugin {plugin!r} declares label-safe transform {unknown[0]!r}, expected some of "
                          f"{', '.join(AUGMENTATIONS)}")
    asked = safe if settings.transforms is None else tuple(settings.transforms)
    unsafe = [name for name in asked if name not in safe]
    if unsafe:
        raise ConfigError(f"train.augment.transforms: {unsafe[0]!r} is not label-safe for plugin {plugin!r} (it "
                          f"allows {', '.join(safe) or 'none'}); remove it from train.augment.transforms")
    return tuple(name for name in AUGMENTATIONS if name in asked)


@contextlib.contextmanager
def _untracked():
    """MONAI transforms on plain tensors: a MetaTensor's bookkeeping costs more than the transforms themselves, and
    only the spatial ones of a case with points need it (its affine moves the points)."""
    from monai.data import get_track_meta, set_track_meta  # lazy: MONAI is needed only when augmenting

    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


class Augmenter:
    """Augments training batches ``{"image": (B, C, H, W) in [0, 1], "targets": {task: ...}, ...}``.

    Args:
        settings: the ``train.augment`` section (probability and strength of each transform).
        transforms: the transforms to use (see :func:`chosen_transforms`).
        point_tasks: tasks whose encoded targets hold a point ``u, v`` (fractions of the image's width and
            height) in columns 0 and 1 and whether it is present in column 3 (:class:`~mtl_core.tasks.PointTask`).
    """

    def __init__(self, settings: AugmentConfig, transforms: Sequence[str], point_tasks: Sequence[str] = ()) -> None:
        self.settings, self.transforms, self.point_tasks = settings, tuple(transforms), tuple(point_tasks)
        self._pipelines: dict[tuple[int, int], object] = {}

    def _pipeline(self, height: int, width: int):
        """The MONAI Compose for images of this size (translations are in pixels)."""
        if (height, width) not in self._pipelines:
            self._pipelines[(height, width)] = self._build(height, width)
        return self._pipelines[(height, width)]

    def _build(self, height: int, width: int):
        from monai.transforms import (  # lazy: MONAI is needed only when augmenting
            ApplyTransformToPointsd,
            Compose,
            RandAdjustContrastd,
            RandAffined,
            RandFlipd,
            RandGaussianNoised,
            RandScaleIntensityd,
        )

        s, on, p = self.settings, self.transforms, self.settings.probability
        steps: list = [RandFlipd(["image"], prob=p, spatial_axis=axis)
                       for name, axis in (("flip_ud", 0), ("flip_lr", 1)) if name in on]
        if any(name in on for name in ("rotate", "scale", "translate")):
            steps.append(RandAffined(
                ["image"], prob=p, padding_mode="border",
                rotate_range=(math.radians(s.rotate_degrees),) if "rotate" in on else None,
                scale_range=(s.scale, s.scale) if "scale" in on else None,
                translate_range=(s.translate * height, s.translate * width) if "translate" in on else None))
        if steps:
            steps.append(ApplyTransformToPointsd(["points"], refer_keys="image", affine_lps_to_ras=False,
                                                 allow_missing_keys=True))
        values: list = []  # on plain tensors: a MetaTensor's bookkeeping would cost more than the transforms
        if "intensity" in on:
            values.append(RandScaleIntensityd(["image"], factors=s.intensity, prob=p))
        if "contrast" in on:
            values.append(RandAdjustContrastd(["image"], prob=p, gamma=(1.0 - s.contrast, 1.0 + s.contrast)))
        if "noise" in on:
            values.append(RandGaussianNoised(["image"], prob=p, std=s.noise_std))
        return Compose(steps), Compose(values)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        """The batch with augmented images and moved point targets (a new dict; the input is left as it is)."""
        images = batch["image"]
        pipeline = self._pipeline(images.shape[-2], images.shape[-1])
        seed = int(torch.randint(0, 2**31 - 2, (1,), generator=generator))
        pipeline[0].set_random_state(seed)
        pipeline[1].set_random_state(seed + 1)
        targets = {k: v.clone() if k in self.point_tasks else v for k, v in batch["targets"].items()}
        out = torch.empty_like(images)
        for i in range(len(images)):
            present = [k for k in self.point_tasks if k in targets and targets[k][i, 3] > 0.5]
            uv = torch.stack([targets[k][i, :2] for k in present]) if present else None  # (P, 2)
            out[i], moved = self._one(pipeline, images[i], uv)
            for row, name in enumerate(present):
                targets[name][i, :2] = moved[row]
        return batch | {"image": out, "targets": targets}

    def _one(self, pipeline, image: torch.Tensor, uv: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One image (C, H, W) and its points (P, 2) as fractions ``u, v``, augmented."""
        spatial, values = pipeline
        moved, result = uv, image.float()
        if spatial.transforms and uv is not None:
            result, moved = self._with_points(spatial, result, uv)
        elif spatial.transforms:
            with _untracked():
                result = spatial({"image": result})["image"]
        with _untracked():
            result = values({"image": result})["image"]
        return torch.as_tensor(result).clamp(0.0, 1.0).to(image.dtype), moved

    @staticmethod
    def _with_points(spatial, image: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The spatial transforms of one image (C, H, W) and of its points (P, 2) as fractions ``u, v``; the image
        and points as they were when a point would leave the image (its label would be wrong)."""
        from monai.data import MetaTensor  # lazy: MONAI is needed only when augmenting

        height, width = image.shape[-2:]
        rows, cols = uv[:, 1].double() * height - 0.5, uv[:, 0].double() * width - 0.5  # MONAI: (row, column) in
        done = spatial({"image": MetaTensor(image), "points": torch.stack([rows, cols], dim=1)[None]})  # pixels
        rows, cols = done["points"].as_tensor()[0].unbind(1)
        moved = torch.stack([(cols + 0.5) / width, (rows + 0.5) / height], dim=1).to(uv.dtype)  # (P, 2)
        if bool(((moved < 0) | (moved > 1)).any()):
            return image, uv
        return done["image"].as_tensor(), moved


def create_augmenter(settings: AugmentConfig, plugin: Any, tasks: Sequence[Any]) -> Augmenter | None:
    """The augmenter of a run (None when ``settings`` leave augmentation off): ``plugin``'s label-safe
    transforms (:attr:`~mtl_core.plugins.Plugin.label_safe_transforms`), its point tasks' targets moved along.

    Raises:
        ConfigError: a transform asked for is not label-safe for the plugin.
    """
    chosen = plugin_transforms(settings, plugin)
    return None if chosen is None else Augmenter(settings, chosen, [t.name for t in tasks if t.kind == "point"])


def plugin_transforms(settings: AugmentConfig, plugin: Any) -> tuple[str, ...] | None:
    """The transforms a run with ``plugin`` uses (None when ``settings`` leave augmentation off), checked against
    the plugin's label-safe ones without building anything (what ``mtl validate`` checks).

    Raises:
        ConfigError: a transform asked for is not label-safe for the plugin.
    """
    if not settings.enabled:
        return None
    safe = getattr(plugin, "label_safe_transforms", SAFE_BY_DEFAULT)
    return chosen_transforms(settings, safe, getattr(plugin, "name", "") or type(plugin).__name__)


@dataclass(frozen=True)
class AugmentedData(TensorData):
    """:class:`~mtl_core.data.records.TensorData` whose training batches (those drawn with a generator) are
    augmented by ``augment``; evaluation batches are left as they are."""

    augment: Augmenter | None = None

    def batches(self, batch_size: int, generator: torch.Generator | None = None, *args, **kwargs) -> Iterator[dict]:
        """As :meth:`TensorData.batches`, each training batch augmented."""
        for batch in super().batches(batch_size, generator, *args, **kwargs):
            yield batch if generator is None or self.augment is None else self.augment(batch, generator)


def with_augment(data: TensorData, augment: Augmenter | None) -> TensorData:
    """``data`` whose training batches ``augment`` augments (``data`` itself when there is none)."""
    if augment is None:
        return data
    return AugmentedData(data.inputs, data.targets, data.masks, data.ids, data.is_features, data.rows, augment)
