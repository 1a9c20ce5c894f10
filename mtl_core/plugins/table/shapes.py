"""A synthetic multi-task data set that is not a chest X-ray: grey images with 0-3 shapes of one kind.

Each image shows ``count`` discs, squares or triangles (or nothing) of one side length ``size_px`` over a smooth
background with noise. ``labels.csv`` has the columns ``id, file, subject, shape, count, size_px``: ``shape`` is
``none | disc | square | triangle`` (``?`` for a missing label), ``size_px`` is ``0`` for an empty image (the
size task's condition masks it), and every four images share a ``subject`` (a group key). The same options give
byte-identical files.

Example:
    >>> import tempfile, pathlib
    >>> folder = write_shapes(pathlib.Path(tempfile.mkdtemp()), ShapesOptions(n=12, size=32))
    >>> sorted(p.name for p in folder.iterdir())
    ['.complete', 'images', 'labels.csv']
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .options import ShapesOptions

SHAPES = ("none", "disc", "square", "triangle")
_SHAPE_P = (0.16, 0.28, 0.28, 0.28)


def _mask(kind: str, size: int, side: int, centre: tuple[float, float]) -> np.ndarray:
    """Boolean (size, size) mask of one shape of side ``side`` centred at ``centre`` (row, column)."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    dy, dx = yy - centre[0], xx - centre[1]
    half = side / 2
    if kind == "disc":
        return dy**2 + dx**2 <= half**2
    if kind == "square":
        return (np.abs(dy) <= half) & (np.abs(dx) <= half)
    depth = (dy + half) / side  # 0 at the apex, 1 at the base
    return (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * half)


def _image(rng: np.random.Generator, size: int, kind: str, count: int, side: int) -> np.ndarray:
    """Pixels (size, size) in [0, 1]: a tilted background, noise, and ``count`` bright shapes."""
    yy, xx = np.mgrid[:size, :size] / size
    angle = rng.uniform(0, 2 * np.pi)
    pixels = 0.25 + 0.1 * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.normal(0, 0.04, (size, size))
    margin = side / 2 + 1
    for _ in range(count):
        centre = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
        pixels[_mask(kind, size, side, centre)] = rng.uniform(0.7, 0.95)
    return np.clip(pixels, 0.0, 1.0)


def shapes_cases(options: ShapesOptions) -> Iterator[tuple[dict[str, object], np.ndarray]]:
    """The table row and the image of each case, one at a time (a large data set is never held in memory)."""
    rng = np.random.default_rng(options.seed)
    low, high = max(4, options.size // 10), max(6, options.size // 4)
    for i in range(options.n):
        kind = str(rng.choice(SHAPES, p=_SHAPE_P))
        count = 0 if kind == "none" else int(rng.integers(1, 4))
        side = 0 if kind == "none" else int(rng.integers(low, high + 1))
        image = _image(rng, options.size, kind, count, side)
        label = "?" if rng.random() < options.missing_fraction else kind
        yield ({"id": f"shape_{i:04d}", "file": f"shape_{i:04d}.png", "subject": f"s{i // 4:03d}",
                "shape": label, "count": count, "size_px": side}, image)


def write_shapes(out_dir: Path, options: ShapesOptions) -> Path:
    """Write the data set into ``out_dir`` (``labels.csv`` + ``images/``) unless it is already there."""
    from PIL import Image

    out_dir = Path(out_dir)
    marker = out_dir / ".complete"
    stamp = json.dumps(options.model_dump(mode="json"), sort_keys=True)
    if marker.is_file() and marker.read_text(encoding="utf-8") == stamp:
        return out_dir
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for row, pixels in shapes_cases(options):
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out_dir / "images" / str(row["file"]))
        rows.append(row)
    pd.DataFrame(rows).to_csv(out_dir / "labels.csv", index=False)
    marker.write_text(stamp, encoding="utf-8")  # last: its presence marks a complete folder
    return out_dir
