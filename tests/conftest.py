"""Shared fixtures: an isolated cache folder, synthetic PNG images, tiny backbones, and offline defaults."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# The unit tests run tiny models on 32x32 images: thread start-up and barriers cost more than they save, and on a
# shared 2-core runner a second OpenMP thread competing with another process slows a forward pass tenfold. Set
# before torch is imported (test modules import it after this file); an explicit setting by the caller wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Tiny timm models (a ResNet and an EfficientNet of a few hundred thousand weights) used by the unit tests.
TINY_BACKBONES = ("test_resnet", "test_efficientnet")
IMAGE_SIZE = 32


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reaches the network, picks up weights from the developer's own $MTL_WEIGHTS_DIR, or writes into
    the developer's own cache (tests that need an empty one take ``tmp_cache``)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MTL_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("MTL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "shared-mtl-cache"))


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder, exported as ``$MTL_CACHE_DIR`` for the duration of the test."""
    root = tmp_path / "mtl-cache"
    root.mkdir()
    monkeypatch.setenv("MTL_CACHE_DIR", str(root))
    return root


def _write_png(path: Path, seed: int, size: int = 40) -> Path:
    """An 8-bit grayscale noise image written with Pillow; the same seed gives the same bytes."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def write_png() -> Callable[..., Path]:
    """``write_png(path, seed, size=40)`` writes (or overwrites) one grayscale noise PNG and returns its path."""
    return _write_png


@pytest.fixture
def make_pngs(tmp_path: Path) -> Callable[..., list[Path]]:
    """Factory: ``make_pngs(n)`` writes ``n`` distinct grayscale PNGs into ``tmp_path/images`` (40x40 pixels,
    so every load exercises the resize to 32x32)."""

    def make(n: int, first_seed: int = 0, folder: str = "images") -> list[Path]:
        out = tmp_path / folder
        out.mkdir(exist_ok=True)
        return [_write_png(out / f"case_{i:03d}.png", first_seed + i) for i in range(n)]

    return make


@pytest.fixture
def make_fusion() -> Callable[..., object]:
    """Factory for a frozen :class:`BackboneFusion` of tiny timm models with random weights at 32x32."""
    from mtl_core import BackboneFusion

    def make(names: tuple[str, ...] | list[str] = TINY_BACKBONES, **kwargs):
        kwargs.setdefault("weights", "random")
        kwargs.setdefault("image_size", IMAGE_SIZE)
        return BackboneFusion(list(names), **kwargs)

    return make
