# mtl_stripes/synthetic.py
"""A small synthetic stripes data set, so that `mtl run` works without any data (the same seed, the same files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SIZE = 48
DIRECTIONS = {"horizontal": (1.0, 0.0), "vertical": (0.0, 1.0), "diagonal": (0.7071, 0.7071)}


def write_stripes(out_dir: Path, n: int, seed: int) -> Path:
    """Write `n` images and labels.csv into `out_dir` (once: labels.csv is written last)."""
    if (out_dir / "labels.csv").is_file():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rows = []
    for i in range(n):
        orientation, period = list(DIRECTIONS)[i % 3], float(rng.integers(4, 13))
        dy, dx = DIRECTIONS[orientation]
        wave = np.sin(2 * np.pi * (dy * yy + dx * xx) / period + rng.uniform(0, 2 * np.pi))
        pixels = np.clip(0.5 + 0.35 * wave + rng.normal(0, 0.05, wave.shape), 0, 1)
        name = f"stripes_{i:03d}.png"
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out_dir / name)
        unlabelled = rng.random() < 0.1  # some cases lack an orientation label: masked, never guessed
        rows.append({"file": name, "orientation": "" if unlabelled else orientation, "period": period})
    pd.DataFrame(rows).to_csv(out_dir / "labels.csv", index=False)
    return out_dir
