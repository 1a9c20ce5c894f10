"""Saliency maps drawn over their images: a PNG per image and task (``mtl explain``, report.html)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..io import atomic_write

#: how strongly the strongest saliency covers the image (weaker saliency covers it less)
ALPHA = 0.6


def overlay(image: np.ndarray, saliency: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """The grey image (H, W) or (C, H, W) in [0, 1] under the coloured map (H, W) in [0, 1]: (H, W, 3) uint8,
    each pixel's colour weighted by its saliency so that the background stays readable."""
    from matplotlib import colormaps  # lazy: matplotlib only where a map is drawn

    grey = np.asarray(image, np.float32)
    grey = grey.mean(axis=0) if grey.ndim == 3 else grey
    heat = np.clip(np.asarray(saliency, np.float32), 0.0, 1.0)
    colour = colormaps[colormap](heat)[..., :3]  # (H, W, 3)
    weight = ALPHA * heat[..., None]
    rgb = (1 - weight) * np.clip(grey, 0.0, 1.0)[..., None] + weight * colour
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def write_overlay(path: Path, image: np.ndarray, saliency: np.ndarray) -> Path:
    """Write :func:`overlay` as a PNG at ``path`` (atomically)."""
    from PIL import Image  # lazy: as matplotlib

    buffer = io.BytesIO()
    Image.fromarray(overlay(image, saliency)).save(buffer, format="PNG")
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)
