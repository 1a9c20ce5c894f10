"""Tests for mtl_core.data.augment: MONAI augmentation changes the images, moves point targets with them (a
rotated dot stays under its target), uses only label-safe transforms and is reproducible from the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_core.config import AugmentConfig
from mtl_core.data import Records, TensorData
from mtl_core.data.augment import SAFE_BY_DEFAULT, Augmenter, chosen_transforms, create_augmenter, with_augment
from mtl_core.errors import ConfigError, PluginError
from mtl_core.plugins import Plugin
from mtl_core.tasks import BinaryTask, PointTask

SIZE = 48


def _dots(n: int, seed: int) -> tuple[torch.Tensor, Records]:
    """Dark images (N, 1, SIZE, SIZE), each with a bright 3x3 dot, and the dot's centre as a point target (pixels)."""
    rng = np.random.default_rng(seed)
    images = np.full((n, 1, SIZE, SIZE), 0.1, np.float32)
    centres = rng.integers(10, SIZE - 10, (n, 2))  # x, y: far enough from the edge to stay inside
    for i, (x, y) in enumerate(centres):
        images[i, 0, y - 1:y + 2, x - 1:x + 2] = 1.0
    targets = {"dot": centres + 0.5, "bright": np.ones(n)}  # the centre pixel's centre, in pixels of the frame
    return torch.from_numpy(images), Records([f"c{i}" for i in range(n)], [Path(f"c{i}") for i in range(n)], targets)


def _data(augment: Augmenter | None, n: int = 12) -> TensorData:
    tasks = [PointTask("dot", frame=(SIZE, SIZE)), BinaryTask("bright")]
    images, records = _dots(n, seed=0)
    return with_augment(TensorData.build(images, records, tasks, is_features=False), augment)


def _strong(*transforms: str) -> Augmenter:
    settings = AugmentConfig(enabled=True, probability=1.0, rotate_degrees=40.0, translate=0.1, scale=0.2,
                             noise_std=0.0, intensity=0.0, contrast=0.0)
    return Augmenter(settings, transforms, point_tasks=["dot"])


@pytest.mark.parametrize("transforms", [("rotate",), ("flip_lr", "flip_ud", "rotate", "scale", "translate")])
def test_a_rotated_dot_stays_under_its_target(transforms):
    data, plain = _data(_strong(*transforms)), _data(None)
    generator = torch.Generator().manual_seed(3)
    moved = 0
    for batch, original in zip(data.batches(6, generator), plain.batches(6, torch.Generator().manual_seed(3)),
                               strict=True):
        assert not torch.equal(batch["image"], original["image"])  # the images changed
        for image, target, before in zip(batch["image"], batch["targets"]["dot"], original["targets"]["dot"],
                                         strict=True):
            row, col = divmod(int(image[0].argmax()), SIZE)  # the brightest pixel: where the dot went
            u, v = float(target[0]) * SIZE, float(target[1]) * SIZE
            assert abs(col + 0.5 - u) <= 1.5 and abs(row + 0.5 - v) <= 1.5, (row, col, u, v)
            moved += bool((target[:2] - before[:2]).abs().max() * SIZE > 2)
        torch.testing.assert_close(batch["targets"]["bright"], original["targets"]["bright"])  # no point: as is
    assert moved >= 6  # most dots moved more than 2 px, and their targets with them


def test_augmentation_is_reproducible_and_leaves_evaluation_batches_alone():
    settings = AugmentConfig(enabled=True)
    data = _data(Augmenter(settings, SAFE_BY_DEFAULT, ["dot"]))
    first = [b["image"] for b in data.batches(4, torch.Generator().manual_seed(1))]
    again = [b["image"] for b in data.batches(4, torch.Generator().manual_seed(1))]
    other = [b["image"] for b in data.batches(4, torch.Generator().manual_seed(2))]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # a resumed epoch draws the same
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert all(float(b.min()) >= 0.0 and float(b.max()) <= 1.0 for b in first)  # still images in [0, 1]
    evaluation = next(data.batches(12))  # no generator: evaluation, as the images are
    torch.testing.assert_close(evaluation["image"], _dots(12, seed=0)[0], rtol=0, atol=0)


class _Flippable(Plugin):
    name = "flippable"
    label_safe_transforms = ("flip_lr", "noise")


def test_only_label_safe_transforms_are_used():
    assert chosen_transforms(AugmentConfig(enabled=True), SAFE_BY_DEFAULT, "p") == SAFE_BY_DEFAULT
    assert "flip_lr" not in Plugin.label_safe_transforms and "scale" not in Plugin.label_safe_transforms
    with pytest.raises(ConfigError, match="'flip_lr' is not label-safe for plugin 'p'"):
        chosen_transforms(AugmentConfig(enabled=True, transforms=["rotate", "flip_lr"]), SAFE_BY_DEFAULT, "p")
    augment = create_augmenter(AugmentConfig(enabled=True), _Flippable(), [PointTask("dot"), BinaryTask("b")])
    assert augment.transforms == ("flip_lr", "noise") and augment.point_tasks == ("dot",)
    assert create_augmenter(AugmentConfig(), _Flippable(), []) is None  # off unless enabled
    with pytest.raises(PluginError, match="declares label-safe transform 'mirror'"):
        chosen_transforms(AugmentConfig(enabled=True), ("mirror",), "p")
